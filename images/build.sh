#!/usr/bin/env bash
# Build ThinkFlow's images and push them to a registry.
#
#   images/build.sh REGISTRY [TAG] [IMAGE...]
#
#   REGISTRY  where to push, e.g. ghcr.io/acme or 123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml
#   TAG       image tag (default: the project version from pyproject.toml, which is the chart's appVersion)
#   IMAGE     base and/or trainer (default: both)
#
# Environment: PLATFORM (default linux/amd64), BUILDX_ARGS (extra `docker buildx build` arguments, e.g.
# "--build-arg MAX_JOBS=16 --cache-from type=registry,ref=...").
#
# Needs docker with buildx and a `docker login` to REGISTRY. The trainer image compiles flash-attn and
# DeepSpeed ops: expect an hour and ~60 GB of disk on a large builder. Prints the pushed digests as the Helm
# values that pin them (images.<name>.repository / tag / digest).
set -euo pipefail

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit "${1:-2}"
}

[[ $# -ge 1 && $1 != -h && $1 != --help ]] || usage 2
registry=${1%/}
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
tag=${1:-$version}
[[ $# -gt 0 ]] && shift
images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=(base trainer)
platform=${PLATFORM:-linux/amd64}
[[ -n $tag ]] || { echo "build.sh: no TAG given and no version in pyproject.toml" >&2; exit 2; }

command -v docker >/dev/null || { echo "build.sh: docker is required" >&2; exit 1; }
docker buildx version >/dev/null || { echo "build.sh: docker buildx is required" >&2; exit 1; }

metadata=$(mktemp -d)
trap 'rm -rf "$metadata"' EXIT

for image in "${images[@]}"; do
  case $image in
    base | trainer) ;;
    *) echo "build.sh: unknown image '$image' (base or trainer)" >&2; exit 2 ;;
  esac
  ref="$registry/thinkflow-$image:$tag"
  echo "==> building $ref for $platform"
  # shellcheck disable=SC2086  # BUILDX_ARGS is a list of arguments
  docker buildx build \
    --platform "$platform" \
    --file "$root/images/$image/Dockerfile" \
    --tag "$ref" \
    --label "org.opencontainers.image.version=$tag" \
    --metadata-file "$metadata/$image.json" \
    --push \
    ${BUILDX_ARGS:-} \
    "$root"
done

echo
echo "Pushed. Helm values pinning these images:"
echo "images:"
for image in "${images[@]}"; do
  digest=$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' "$metadata/$image.json" | head -n 1)
  echo "  $image:"
  echo "    repository: $registry/thinkflow-$image"
  echo "    tag: \"$tag\""
  echo "    digest: \"$digest\""
done
