"""The lineage file written beside a trained model's weights (``lineage.json``).

Evaluation and registration read it to know what a model is: which dataset (URI and manifest content
hash), which base model (and that model's own lineage, when it was trained by ThinkFlow, e.g. SFT before
GRPO), the resolved training config, the code version (git sha) and the library versions, plus the run's
final metrics and MLflow run id.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from thinkflow import env, storage

LINEAGE_FILE = "lineage.json"
SCHEMA_VERSION = 1
TRACKED_PACKAGES = (
    "thinkflow",
    "torch",
    "transformers",
    "trl",
    "accelerate",
    "peft",
    "datasets",
    "deepspeed",
    "vllm",
    "mlflow",
)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a training run depends on (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_sha() -> str | None:
    """The code version: ``THINKFLOW_GIT_SHA`` (set in images), else the checkout's HEAD, else None."""
    baked = os.environ.get(env.GIT_SHA)
    if baked:
        return baked
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def read_lineage(model: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The lineage of a model dir or ``s3://`` model URI, or None when it has no lineage file."""
    uri = storage.join(model, LINEAGE_FILE)
    try:
        if not storage.exists(uri):
            return None
        data = json.loads(storage.read_text(uri))
    except (OSError, ValueError, storage.StorageError):
        return None
    return data if isinstance(data, dict) else None


def build_lineage(
    *,
    stage: str,
    config: dict[str, Any],
    base_model: str,
    data: str,
    manifest_hash: str | None,
    split: str,
    num_examples: int,
    global_step: int,
    metrics: dict[str, float],
    mlflow_run_id: str | None,
    resumed_from: str | None = None,
) -> dict[str, Any]:
    """Assemble the lineage record of one finished training run."""
    parent = read_lineage(base_model)
    return {
        "schema_version": SCHEMA_VERSION,
        "stage": stage,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {
            "uri": base_model,
            # The chain of ThinkFlow stages behind the base model (e.g. grpo <- sft <- pretrained).
            "stage": parent.get("stage") if parent else None,
            "lineage": parent,
        },
        "dataset": {"uri": data, "manifest_hash": manifest_hash, "split": split, "num_examples": num_examples},
        "config": config,
        "git_sha": git_sha(),
        "versions": library_versions(),
        "global_step": global_step,
        "resumed_from": resumed_from,
        "metrics": metrics,
        "mlflow_run_id": mlflow_run_id,
    }


def write_lineage(model_dir: str | os.PathLike[str], lineage: dict[str, Any]) -> Path:
    """Write ``lineage.json`` into a local model directory; returns its path."""
    path = Path(model_dir) / LINEAGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(lineage, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path
