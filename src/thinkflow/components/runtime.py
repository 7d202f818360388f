"""What every component body calls at run time (inside the pod, or the kfp.local subprocess).

A component body is three lines: build the stage config with `thinkflow.config.stage_config` (preset +
``overrides`` + the artifact paths the component fixes), call the stage function through `run_stage`, hand
the result to `record`. This module holds the glue those lines share:

- `run_stage`: the stage nested under the pipeline's MLflow parent run (`thinkflow.tracking.attach_parent`);
- `record`: a stage's metrics into the KFP ``Metrics`` artifact, its outputs into the artifact metadata,
  and a summary (metrics prefixed by stage, output URIs as tags) onto the parent run, which is what
  ``thinkflow run`` prints at the end;
- `workspace_dir`, `copy_output`: the run's workspace and the output artifacts' local paths;
- `registered_tags`: what a registration produced, as parent-run tags.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from thinkflow import env, storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.tracking import TAG_OUTPUT, TAG_REGISTERED, attach_parent, stage_run

if TYPE_CHECKING:
    from thinkflow.registry import Registration

log = logging.getLogger("thinkflow.components")

C = TypeVar("C", bound=StageConfig)

_METRIC_KEY = re.compile(r"[^\w\-. /]")


def workspace_dir(workspace: str | None, *parts: str) -> Path:
    """A directory in the run's workspace (``dsl.WORKSPACE_PATH_PLACEHOLDER`` as resolved by KFP).

    Outside a pipeline (the placeholder unresolved or empty) it falls back to ``THINKFLOW_WORKSPACE`` or
    ``~/.cache/thinkflow/workspace``.
    """
    root = workspace if workspace and "{{" not in workspace else None
    if root is None:
        root = os.environ.get(env.WORKSPACE) or str(storage.cache_dir() / "workspace")
    path = Path(root, *[p for p in parts if p])
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_stage(fn: Callable[[C], StageResult], cfg: C, workspace: str | None = None) -> StageResult:
    """Call one stage function with its config, nested under the pipeline's parent run.

    A stage function that logs no MLflow run of its own (e.g. validation) gets one here, with its config
    as params and its metrics, so that every task of a pipeline shows up under the parent run.
    """
    attach_parent(workspace)
    started = time.monotonic()
    result = fn(cfg)
    log.info("stage %s finished in %.1fs: %s", result.stage, time.monotonic() - started, result.output)
    if result.mlflow_run_id is None and os.environ.get(env.PARENT_RUN_ID):
        import mlflow

        with stage_run(result.stage, cfg.model_dump(mode="json")) as run:
            numbers = {k: float(v) for k, v in result.metrics.items() if math.isfinite(v)}
            mlflow.log_metrics({_metric_key(k): v for k, v in numbers.items()})
            mlflow.set_tag(TAG_OUTPUT, result.output)
        result = result.model_copy(update={"mlflow_run_id": run.info.run_id})
    return result


def copy_output(src: str, dst: str) -> str:
    """Put a stage's output (local dir or ``s3://``) at an artifact's local path; no-op when the same."""
    if not storage.is_remote(src) and Path(src).resolve() == Path(dst).resolve():
        return dst
    storage.sync(src, dst)
    return dst


def _metric_key(*parts: str) -> str:
    return _METRIC_KEY.sub("_", ".".join(p for p in parts if p))[:250]


def record(
    result: StageResult,
    metrics: Any = None,
    artifact: Any = None,
    *,
    label: str = "",
    tags: Mapping[str, str] | None = None,
) -> None:
    """Publish a stage result: numbers into the KFP ``Metrics`` artifact, the stage/output/MLflow run into
    the output artifact's metadata, and a summary onto the MLflow parent run (metrics ``[label/]stage.key``,
    tag ``thinkflow.output.[label/]stage`` = the output URI, plus ``tags``)."""
    numbers = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
    if metrics is not None:  # only numbers: the KFP UI shows a Metrics artifact's metadata as scalars
        for key, value in numbers.items():
            metrics.log_metric(key, value)
    if artifact is not None:
        artifact.metadata.update({"stage": result.stage, "output": result.output})
        if label:
            artifact.metadata["label"] = label
        if result.mlflow_run_id:
            artifact.metadata["mlflow_run_id"] = result.mlflow_run_id
    parent = os.environ.get(env.PARENT_RUN_ID)
    if not parent:
        return
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    prefix = f"{label}/" if label else ""
    now = int(time.time() * 1000)
    run_tags = {f"{TAG_OUTPUT}.{prefix}{result.stage}": result.output}
    if artifact is not None and getattr(artifact, "uri", None):
        run_tags[f"{TAG_OUTPUT}.{prefix}{result.stage}.artifact"] = artifact.uri
    for name, uri in result.artifacts.items():
        run_tags[f"{TAG_OUTPUT}.{prefix}{result.stage}.{name}"] = uri
    run_tags.update(tags or {})
    MlflowClient().log_batch(
        parent,
        metrics=[Metric(_metric_key(f"{prefix}{result.stage}", k), v, now, 0) for k, v in numbers.items()],
        tags=[RunTag(k[:250], str(v)[:5000]) for k, v in run_tags.items()],
    )


def train(
    stage: str,
    fn: Callable[[C], StageResult],
    cls: type[C],
    preset: str,
    overrides: Mapping[str, Any] | None,
    *,
    base_model: Any,
    base_model_uri: str,
    data: Any,
    model: Any,
    metrics: Any,
    label: str,
    workspace: str | None,
) -> str:
    """The body of the ``sft`` and ``grpo`` components (``stage``): the stage config (the ``base_model`` artifact, else
    ``base_model_uri``, else the preset's model; checkpoints in the run's workspace under the stage and label, so a
    retried task resumes), the stage run, the weights at the ``model`` artifact, the result recorded. Returns the
    model artifact's URI."""
    from thinkflow.config import stage_config

    cfg = stage_config(
        cls,
        preset,
        overrides,
        model=base_model.path if base_model is not None else (base_model_uri or None),
        data=data.path,
        output_dir=model.path,
        checkpoint_dir=str(workspace_dir(workspace, "checkpoints", f"{stage}-{label}" if label else stage)),
    )
    result = run_stage(fn, cfg, workspace)
    copy_output(result.output, model.path)
    record(result, metrics, model, label=label)
    return str(model.uri)


def registered_tags(registration: Registration) -> dict[str, str]:
    """Parent-run tags of a registration (``thinkflow.registered.name/version/alias/gate/gate_reason``)."""
    out = {f"{TAG_REGISTERED}.{key}": getattr(registration, key) for key in ("name", "version", "alias")}
    if registration.gate is not None:
        out[f"{TAG_REGISTERED}.gate"] = registration.gate.decision
        out[f"{TAG_REGISTERED}.gate_reason"] = registration.gate.reason
    return out
