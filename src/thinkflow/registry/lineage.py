"""What a model version is made of and where it came from: its files, their content hash, its ``lineage.json``.

No MLflow here: these read the checkpoint directory the training stage wrote. The content hash identifies a
model across registrations (`thinkflow.registry.register` is idempotent by it) and is what serving checks a
download against (`thinkflow.serving.resolve`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thinkflow import env
from thinkflow.errors import ThinkFlowError

LINEAGE_FILE = "lineage.json"
CONTENT_HASH_TAG = "thinkflow.content_hash"
# The lineage a version should have; the ones nobody could tell are reported (warning, result, description).
LINEAGE_KEYS = (
    "dataset_uri",
    "dataset_manifest_hash",
    "base_model",
    "config",
    "git_sha",
    "versions",
    "pipeline_run_id",
    "image",
    "reward_mix",
)
# Not part of the model: training checkpoints and logs kept beside the final weights, hidden files.
SKIP_DIRS = ("checkpoints", "checkpoint-*", "runs", "logs", ".*")


class RegistryError(ThinkFlowError, RuntimeError):
    """A registration that cannot proceed; the message names the model, file or version."""


def model_files(model_dir: str | os.PathLike[str]) -> list[Path]:
    """The files that make up the model (relative paths, sorted): everything but checkpoints, logs, hidden files."""
    root = Path(model_dir)
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(fnmatch.fnmatch(part, pat) for part in rel.parts[:-1] for pat in SKIP_DIRS):
            continue
        if path.is_file() and not rel.name.startswith("."):
            out.append(rel)
    return sorted(out, key=lambda p: p.as_posix())


def content_hash(model_dir: str | os.PathLike[str]) -> str:
    """SHA-256 over the model's files (relative path + bytes); ``lineage.json`` is metadata and left out."""
    root = Path(model_dir)
    h = hashlib.sha256()
    files = [f for f in model_files(root) if f.as_posix() != LINEAGE_FILE]
    if not files:
        raise RegistryError(f"{model_dir}: empty model directory")
    for rel in files:
        h.update(rel.as_posix().encode() + b"\0")
        with open(root / rel, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


@contextmanager
def staged_model(model_dir: Path) -> Iterator[Path]:
    """The model directory as MLflow should copy it: without checkpoints or logs (hard links, no byte copies)."""
    files = model_files(model_dir)
    if len(files) == sum(1 for p in model_dir.rglob("*") if p.is_file()):
        yield model_dir
        return
    with tempfile.TemporaryDirectory(prefix="thinkflow-model-") as tmp:
        stage = Path(tmp, model_dir.name or "model")
        for rel in files:
            target = stage / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(model_dir / rel, target)
            except OSError:
                shutil.copy2(model_dir / rel, target)
        yield stage


def read_lineage(model_dir: Path) -> dict[str, Any] | None:
    """The ``lineage.json`` beside the weights, or None; a malformed file is an error naming it."""
    path = model_dir / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RegistryError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def lineage_fields(lineage: dict[str, Any] | None) -> dict[str, Any]:
    """The lineage values the registry records, from the training stage's file (nested or flat keys).

    ``pipeline_run_id`` and ``image`` fall back to ``THINKFLOW_PIPELINE_RUN_ID`` / ``THINKFLOW_IMAGE`` (set by
    the pipeline and the image) when the file does not carry them.
    """
    lin = lineage or {}
    raw_dataset = lin.get("dataset")
    dataset: dict[str, Any] = raw_dataset if isinstance(raw_dataset, dict) else {}
    base = lin.get("base_model")
    config = lin.get("config") if isinstance(lin.get("config"), dict) else None
    reward_mix = lin.get("reward_mix")
    if reward_mix is None:  # GRPO lineage: the reward functions used and the reward config
        parts = {k: lin[k] for k in ("reward_funcs",) if lin.get(k)}
        parts.update({k: config[k] for k in ("reward", "reward_funcs") if config and config.get(k)})
        reward_mix = parts or ("none (sft)" if lin.get("stage") == "sft" else None)
    return {
        "dataset_uri": lin.get("dataset_uri") or dataset.get("uri"),
        "dataset_manifest_hash": lin.get("dataset_manifest_hash") or dataset.get("manifest_hash"),
        "dataset_split": dataset.get("split"),
        "base_model": base.get("uri") if isinstance(base, dict) else base,
        "stage": lin.get("stage"),
        "config": config,
        "git_sha": lin.get("git_sha"),
        "versions": lin.get("versions"),
        "pipeline_run_id": lin.get("pipeline_run_id") or os.environ.get(env.PIPELINE_RUN_ID),
        "image": lin.get("image") or os.environ.get(env.IMAGE),
        "reward_mix": reward_mix,
        "training_run_id": lin.get("mlflow_run_id"),
    }


def missing_lineage(fields: dict[str, Any]) -> list[str]:
    """The `LINEAGE_KEYS` nobody could tell (empty or absent in `lineage_fields`)."""
    return [k for k in LINEAGE_KEYS if fields.get(k) in (None, "", {}, [])]
