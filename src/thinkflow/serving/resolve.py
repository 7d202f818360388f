"""Resolve ``models:/NAME@ALIAS`` in the MLflow registry and put that version's weights where the server reads them.

``thinkflow serve-init`` (the serving Deployment's init container) calls `serve_init`:

1. resolve the version: ``cfg.version`` when set (the Deployment passes its pod-template annotation
   ``thinkflow.io/model-version`` through the downward API, so a pod serves exactly the version its template
   names, even if the alias moved again meanwhile), else the alias in ``cfg.model`` (MLflow REST through
   ``MlflowClient``; ``MLFLOW_TRACKING_URI`` and the basic-auth ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``);
2. download that version's files into ``<cache_dir>/<name>/<version>/`` unless a complete copy is there:
   from S3/MinIO with `thinkflow.storage` when the version's artifact location is ``s3://``, otherwise through
   the MLflow artifact API (``mlflow-artifacts:`` proxied by the server). The copy is staged in a temporary
   directory, checked against the version's ``thinkflow.content_hash`` tag, then renamed into place with a
   ``.thinkflow-complete`` marker, so a crashed download is never mistaken for a complete one;
3. point ``<output_dir>/current`` at it and write ``<output_dir>/served.json`` (name, version, alias, hash) and
   ``<output_dir>/served-model-name`` (``NAME-vVERSION``), which the server reports.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from thinkflow import storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.errors import ThinkFlowError

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".thinkflow-complete"
SERVED_FILE = "served.json"
SERVED_NAME_FILE = "served-model-name"
CURRENT_LINK = "current"


class ServingError(ThinkFlowError, RuntimeError):
    """Serving cannot proceed; the message names the model, version or file."""


class ServeInitConfig(StageConfig):
    """Resolve a registered model alias and stage its weights for the server. Every key has a default."""

    model: str = Field(
        default="models:/thinkflow-vlm@champion",
        min_length=1,
        description="The registered model to serve: models:/NAME@ALIAS or models:/NAME/VERSION.",
    )
    version: str | None = Field(
        default=None,
        description="Pin a version (the pod-template annotation thinkflow.io/model-version); empty: resolve the alias.",
    )
    cache_dir: str = Field(
        default="/models/cache",
        description="Versions are kept in <cache_dir>/<name>/<version>/ (a PVC survives pod restarts).",
    )
    output_dir: str = Field(
        default="/models", description="Gets `current` -> the version's weights, served.json and served-model-name."
    )
    keep: int = Field(default=3, ge=1, description="Versions kept in the cache (the oldest others are removed).")
    verify_hash: bool = Field(
        default=True, description="Check the download against the version's thinkflow.content_hash tag."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` -> (NAME, ALIAS, None); ``models:/NAME/VERSION`` -> (NAME, None, VERSION)."""
    if not uri.startswith("models:/"):
        raise ServingError(f"model: expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    ref = uri.removeprefix("models:/").strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if name and alias:
            return name, alias, None
    else:
        name, _, version = ref.rpartition("/")
        if name and version.isdigit():
            return name, None, version
    raise ServingError(f"model: expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")


def served_name(name: str, version: str) -> str:
    """The model id a server answers with for ``version`` (``NAME-vVERSION``): clients see which version answered."""
    return f"{name}-v{version}"


def version_from_model_id(model_id: str, name: str) -> str | None:
    """The version in a response's ``model`` field (``NAME-vVERSION``), or None."""
    prefix = f"{name}-v"
    rest = model_id[len(prefix) :] if model_id.startswith(prefix) else ""
    return rest if rest.isdigit() else None


def resolve(client: Any, name: str, alias: str | None, version: str | None) -> Any:
    """The ModelVersion: ``version`` when given, else the one holding ``alias``; errors name the model."""
    from mlflow.exceptions import MlflowException

    try:
        if version:
            return client.get_model_version(name, str(version))
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version else f"alias @{alias}"
        raise ServingError(f"models:/{name}: {what} not found in the registry ({exc.error_code})") from None


def _weights_root(staged: Path, name: str, version: str) -> Path:
    """The directory with ``config.json`` in a downloaded version (the transformers flavor keeps it in ``model/``)."""
    for candidate in (staged / "model", staged):
        if (candidate / "config.json").is_file():
            return candidate
    found = sorted(staged.rglob("config.json"), key=lambda p: len(p.parts))
    if found:
        return found[0].parent
    files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())[:8]
    raise ServingError(f"models:/{name}/{version}: no config.json in the downloaded artifacts (found: {files})")


def download_version(client: Any, mv: Any, dest: Path, *, verify_hash: bool = True) -> Path:
    """Download version ``mv`` into ``dest`` (created; must not exist) atomically; returns ``dest``."""
    import mlflow.artifacts

    from thinkflow.registry.lineage import CONTENT_HASH_TAG, content_hash

    name, version = mv.name, str(mv.version)
    uri = client.get_model_version_download_uri(name, version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=dest.parent))
    try:
        if storage.is_remote(uri):
            local = storage.download(uri, staging / "artifacts")
        else:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging / "artifacts")))
        weights = _weights_root(local, name, version)
        expected = (mv.tags or {}).get(CONTENT_HASH_TAG)
        if verify_hash and expected:
            got = content_hash(weights)
            if got != expected:
                raise ServingError(
                    f"models:/{name}/{version}: downloaded files hash to {got[:12]}, the registry says "
                    f"{expected[:12]} ({CONTENT_HASH_TAG}); not serving a corrupt copy"
                )
        (weights / COMPLETE_MARKER).write_text(json.dumps({"name": name, "version": version, "source": uri}))
        os.replace(weights, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def is_complete(path: Path, name: str, version: str) -> bool:
    """True when ``path`` holds a finished download of ``name`` version ``version``."""
    marker = path / COMPLETE_MARKER
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("name") == name and str(data.get("version")) == version


def _prune(model_cache: Path, keep_version: str, keep: int) -> None:
    versions = sorted(
        (p for p in model_cache.iterdir() if p.is_dir() and p.name.isdigit() and p.name != keep_version),
        key=lambda p: int(p.name),
    )
    for old in versions[: max(0, len(versions) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


def read_served(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``served.json`` written by `serve_init` (what the server reports); errors name the file."""
    path = Path(output_dir) / SERVED_FILE if Path(output_dir).is_dir() else Path(output_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServingError(f"{path}: cannot read the served-version file ({exc.strerror})") from None
    except ValueError as exc:
        raise ServingError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not data.get("name") or not str(data.get("version", "")).isdigit():
        raise ServingError(f"{path}: expected an object with 'name' and a numeric 'version'")
    return data


def serve_init(cfg: ServeInitConfig, *, client: Any | None = None) -> StageResult:
    """Resolve ``cfg.model`` (or the pinned ``cfg.version``), stage its weights, record the served version."""
    from mlflow import MlflowClient

    name, alias, uri_version = parse_model_uri(cfg.model)
    pinned = (cfg.version or "").strip() or uri_version
    if pinned and not pinned.isdigit():
        raise ServingError(f"version: expected a version number, got {cfg.version!r}")
    client = client or MlflowClient()
    mv = resolve(client, name, alias, pinned)
    version = str(mv.version)
    model_cache = Path(cfg.cache_dir) / name
    target = model_cache / version
    reused = is_complete(target, name, version)
    if not reused:
        if target.exists():  # an incomplete copy (older layout or an interrupted rename): start over
            shutil.rmtree(target)
        log.info("downloading %s version %s into %s", name, version, target)
        download_version(client, mv, target, verify_hash=cfg.verify_hash)
    _prune(model_cache, version, cfg.keep)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    link = out / CURRENT_LINK
    tmp_link = out / f".{CURRENT_LINK}.{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(target.resolve(), target_is_directory=True)
    os.replace(tmp_link, link)
    from thinkflow.registry.lineage import CONTENT_HASH_TAG

    served = {
        "name": name,
        "version": version,
        "alias": alias,
        "model_uri": f"models:/{name}/{version}",
        "served_model_name": served_name(name, version),
        "content_hash": (mv.tags or {}).get(CONTENT_HASH_TAG, ""),
        "path": str(target),
        "resolved_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out / SERVED_FILE).write_text(json.dumps(served, indent=2) + "\n", encoding="utf-8")
    (out / SERVED_NAME_FILE).write_text(served["served_model_name"] + "\n", encoding="utf-8")
    return StageResult(
        stage="serve-init",
        output=str(link),
        metrics={"version": float(version), "downloaded": float(not reused)},
        artifacts={"model_uri": served["model_uri"], "served_model_name": served["served_model_name"]},
    )
