"""Local paths and ``s3://bucket/key`` URIs (MinIO or any S3) behind one small API.

Endpoint and credentials come from the standard environment variables: ``AWS_ENDPOINT_URL`` (or
``MLFLOW_S3_ENDPOINT_URL``), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and optionally
``AWS_DEFAULT_REGION``. ``minio://`` is accepted as an alias of ``s3://`` (KFP writes it for MinIO roots).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error

from thinkflow import env
from thinkflow.errors import ThinkFlowError

REMOTE_SCHEMES = ("s3", "minio")


class StorageError(ThinkFlowError, RuntimeError):
    """An object-store operation failed; the message names the URI."""


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for ``s3://`` / ``minio://`` URIs."""
    return urlparse(str(uri)).scheme in REMOTE_SCHEMES


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    parsed = urlparse(uri)
    if parsed.scheme not in REMOTE_SCHEMES or not parsed.netloc:
        raise StorageError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def climbs_out(parts: Iterable[str]) -> bool:
    """True when relative path ``parts`` climb above their start with ``..`` (keys here, image refs in
    `thinkflow.images`)."""
    depth = 0
    for part in parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _escapes(key: str) -> bool:
    """True when a ``/``-separated relative key climbs above its start with ``..``."""
    return climbs_out(key.split("/"))


def join(uri: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts onto a local path or a remote URI (a part with ``..`` leaving ``uri`` is refused)."""
    base = str(uri)
    if is_remote(base):
        rel = "/".join(p.strip("/") for p in parts)
        if _escapes(rel) or "\x00" in rel:
            raise StorageError(f"{rel!r} leaves {base}")
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def within(uri: str, prefix: str) -> bool:
    """True when remote ``uri`` names an object at or under remote ``prefix`` (same bucket, no ``..`` escape)."""
    try:
        bucket, key = split_uri(uri)
        pbucket, pkey = split_uri(prefix)
    except StorageError:
        return False
    if bucket != pbucket or "\x00" in key:
        return False
    pkey = pkey.strip("/")
    if not pkey:
        return not _escapes(key)
    if key.rstrip("/") == pkey:
        return True
    return key.startswith(pkey + "/") and not _escapes(key[len(pkey) + 1 :])


def endpoint() -> tuple[str, bool]:
    """``(host, secure)`` of the S3 endpoint: ``AWS_ENDPOINT_URL`` / ``MLFLOW_S3_ENDPOINT_URL``, or AWS S3 when
    only AWS credentials are set. Neither: an error saying what to set (never a silent fallback to AWS)."""
    url = os.environ.get(env.AWS_ENDPOINT_URL) or os.environ.get(env.MLFLOW_S3_ENDPOINT_URL)
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        return parsed.netloc, parsed.scheme == "https"
    if os.environ.get(env.AWS_ACCESS_KEY_ID):
        return "s3.amazonaws.com", True
    raise StorageError(
        "no S3 endpoint configured: set AWS_ENDPOINT_URL (e.g. http://localhost:9000 for MinIO) with "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS credentials alone for AWS S3"
    )


def client(http_client: Any = None) -> Minio:
    """A minio client for the endpoint and credentials in the environment (see `endpoint`)."""
    host, secure = endpoint()
    return Minio(
        host,
        access_key=os.environ.get(env.AWS_ACCESS_KEY_ID),
        secret_key=os.environ.get(env.AWS_SECRET_ACCESS_KEY),
        session_token=os.environ.get(env.AWS_SESSION_TOKEN),
        region=next((os.environ[name] for name in env.AWS_REGION if os.environ.get(name)), None),
        secure=secure,
        http_client=http_client,
    )


def check_remote(uri: str, *, timeout: float = 5.0, bucket_may_be_missing: bool = False) -> None:
    """Fail fast unless the endpoint of ``uri`` answers, the credentials are accepted and the bucket exists (or,
    for an output, ``bucket_may_be_missing``: `upload` creates it)."""
    import urllib3

    bucket, _ = split_uri(uri)
    host, _secure = endpoint()
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False)
    try:
        found = client(http).bucket_exists(bucket)
    except S3Error as exc:
        raise StorageError(
            f"{uri}: the S3 endpoint {host} refused ({exc.code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise StorageError(
            f"{uri}: the S3 endpoint {host} does not answer ({type(exc).__name__}); check AWS_ENDPOINT_URL"
        ) from None
    if not found and not bucket_may_be_missing:
        raise StorageError(f"{uri}: bucket {bucket!r} does not exist at {host}; create it first")


def check_writable(uri: str | os.PathLike[str], what: str = "output") -> None:
    """Fail fast unless ``uri`` can be written: a local folder (or its nearest existing parent) writable by
    this user, or a reachable S3 endpoint (`check_remote`; a missing bucket is created by `upload`). Creates
    nothing."""
    if is_remote(uri):
        check_remote(str(uri), bucket_may_be_missing=True)
        return
    path = Path(uri).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise StorageError(f"{what} {uri}: exists and is not a folder; choose another location")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(f"{what} {uri}: {probe} is not writable by this user; choose a writable location")


def _objects(uri: str) -> list[tuple[str, str, str]]:
    """(object key, path relative to the prefix, etag) for every object under a remote prefix (or the object)."""
    bucket, prefix = split_uri(uri)
    cli = client()
    try:
        exact = [o for o in cli.list_objects(bucket, prefix=prefix) if o.object_name == prefix]
        if exact:
            return [(prefix, "", exact[0].etag or "")]
        dir_prefix = prefix.rstrip("/") + "/" if prefix else ""
        return [
            (obj.object_name, obj.object_name[len(dir_prefix) :], obj.etag or "")
            for obj in cli.list_objects(bucket, prefix=dir_prefix, recursive=True)
            if obj.object_name and not obj.is_dir
        ]
    except S3Error as exc:
        raise StorageError(f"cannot list {uri}: {exc.code}: {exc.message}") from None


def exists(uri: str | os.PathLike[str]) -> bool:
    """True if a local path exists, or a remote object/prefix has at least one object."""
    if not is_remote(uri):
        return Path(uri).exists()
    return bool(_objects(str(uri)))


def upload(local: str | os.PathLike[str], uri: str) -> list[str]:
    """Upload a file or a whole directory (recursively) to ``uri``; returns the object URIs written."""
    local_path = Path(local)
    if not local_path.exists():
        raise StorageError(f"cannot upload {local_path}: no such file or directory")
    bucket, key = split_uri(uri)
    cli = client()
    try:
        if not cli.bucket_exists(bucket):
            cli.make_bucket(bucket)
        files = [local_path] if local_path.is_file() else sorted(p for p in local_path.rglob("*") if p.is_file())
        written = []
        for f in files:
            rel = "" if local_path.is_file() else f.relative_to(local_path).as_posix()
            obj = "/".join(x for x in (key.rstrip("/"), rel) if x)
            cli.fput_object(bucket, obj, str(f))
            written.append(f"s3://{bucket}/{obj}")
    except S3Error as exc:
        raise StorageError(f"cannot upload {local_path} to {uri}: {exc.code}: {exc.message}") from None
    return written


def mirror(local: str | os.PathLike[str], uri: str, names: list[str], content_dirs: tuple[str, ...] = ()) -> None:
    """Make the remote prefix ``uri`` hold exactly what folder ``local`` holds of ``names`` and ``content_dirs``.

    ``names`` (files directly in ``local``) are uploaded in order, so the last one (a manifest) lands last;
    one that ``local`` lacks is removed from ``uri``. The files of each ``content_dirs`` folder are named by
    their content (e.g. a hash): those already at ``uri`` are not sent again, and remote ones ``local`` lacks are
    removed. Nothing else under ``uri`` is touched.
    """
    from minio.deleteobjects import DeleteObject

    root = Path(local)
    bucket, prefix = split_uri(uri)
    prefix = prefix.rstrip("/")

    def key(rel: str) -> str:
        return f"{prefix}/{rel}" if prefix else rel

    cli = client()
    try:
        if not cli.bucket_exists(bucket):
            cli.make_bucket(bucket)
        stale: list[DeleteObject] = []
        for folder in content_dirs:
            dir_prefix = key(folder) + "/"
            remote = {
                (o.object_name or "")[len(dir_prefix) :]
                for o in cli.list_objects(bucket, prefix=dir_prefix, recursive=True)
            }
            here = {p.name for p in (root / folder).iterdir() if p.is_file()} if (root / folder).is_dir() else set()
            for name in sorted(here - remote):
                cli.fput_object(bucket, dir_prefix + name, str(root / folder / name))
            stale += [DeleteObject(dir_prefix + name) for name in sorted(remote - here)]
        present = [name for name in names if (root / name).is_file()]
        stale += [DeleteObject(key(name)) for name in names if name not in present]
        for error in cli.remove_objects(bucket, stale):
            if error.code != "NoSuchKey":
                raise StorageError(f"cannot remove {error.name} from {uri}: {error.message}")
        for name in present:
            cli.fput_object(bucket, key(name), str(root / name))
    except S3Error as exc:
        raise StorageError(f"cannot publish {root} to {uri}: {exc.code}: {exc.message}") from None


def download(uri: str, local: str | os.PathLike[str]) -> Path:
    """Download an object, or every object under a prefix, to ``local`` (a file path or a directory)."""
    bucket, _ = split_uri(uri)
    objects = _objects(uri)
    if not objects:
        raise StorageError(f"nothing at {uri}")
    dest = Path(local)
    for key, rel, _etag in objects:  # an object key must not write outside `local` (``prefix/../../x``, ``/x``)
        if rel and (_escapes(rel) or rel.startswith("/") or "\x00" in rel):
            raise StorageError(f"cannot download {uri}: object key {key!r} leads outside the prefix")
    cli = client()
    try:
        for key, rel, _etag in objects:
            target = dest / rel if rel else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            cli.fget_object(bucket, key, str(target))
    except S3Error as exc:
        raise StorageError(f"cannot download {uri}: {exc.code}: {exc.message}") from None
    return dest


def cache_dir() -> Path:
    """Where remote inputs are downloaded (``THINKFLOW_CACHE``, default ``~/.cache/thinkflow``)."""
    return Path(os.environ.get(env.CACHE, Path.home() / ".cache" / "thinkflow"))


def localize(uri: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None) -> Path:
    """A local path for ``uri``: local paths as they are; remote ones downloaded into the cache.

    The cached copy is reused while the remote listing (keys and ETags) is unchanged, and downloaded again
    when something was rewritten at the same URI.
    """
    if not is_remote(uri):
        path = Path(uri)
        if not path.exists():
            raise StorageError(f"no such file or directory: {path}")
        return path
    text = str(uri).rstrip("/")
    objects = _objects(text)
    if not objects:
        raise StorageError(f"nothing at {text}")
    fingerprint = hashlib.sha256(repr(sorted(objects)).encode()).hexdigest()
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    root = Path(cache or cache_dir())
    target = root / digest / (Path(split_uri(text)[1]).name or split_uri(text)[0])
    marker = target.parent / ".complete"
    if marker.exists() and marker.read_text() == fingerprint:
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root))
    try:
        download(text, staging / target.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.move(str(staging / target.name), target)
        marker.write_text(fingerprint)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def publish(local: str | os.PathLike[str], uri: str | os.PathLike[str]) -> str:
    """Put a local result at ``uri``: upload when remote, copy when a different local path; returns ``uri``."""
    if is_remote(uri):
        upload(local, str(uri))
    elif Path(local).resolve() != Path(uri).resolve():
        src, dst = Path(local), Path(uri)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return str(uri)


def read_text(uri: str | os.PathLike[str]) -> str:
    """Read a text file from a local path or a remote object."""
    if not is_remote(uri):
        return Path(uri).read_text(encoding="utf-8")
    bucket, key = split_uri(str(uri))
    try:
        resp = client().get_object(bucket, key)
        try:
            return resp.read().decode("utf-8")
        finally:
            resp.close()
            resp.release_conn()
    except S3Error as exc:
        raise StorageError(f"cannot read {uri}: {exc.code}: {exc.message}") from None


def write_text(uri: str | os.PathLike[str], text: str) -> None:
    """Write a text file to a local path or a remote object."""
    if not is_remote(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_text(text, encoding="utf-8")
        return
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp, "obj")
        f.write_text(text, encoding="utf-8")
        upload(f, str(uri))


def sync(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> str:
    """Copy a directory tree between any two of local/remote (remote->remote goes through a temp dir)."""
    if is_remote(src):
        if is_remote(dst):
            with tempfile.TemporaryDirectory() as tmp:
                download(str(src), Path(tmp, "x"))
                return publish(Path(tmp, "x"), dst)
        download(str(src), dst)
        return str(dst)
    return publish(src, dst)
