"""What every component body calls at run time (inside the pod, or the kfp.local subprocess).

A component body is three lines: build the stage config with `stage_config`, call the stage function
through `run_stage`, hand the result to `record`. This module holds the glue those lines share:

- configs: a preset name (or YAML path) plus an ``overrides`` dict (a pipeline parameter), plus the
  artifact paths the component fixes (``model``, ``data``, ``output_dir``...), validated by pydantic;
- the MLflow parent run of the pipeline run: `open_parent_run` (first task) creates it and writes its id
  to the run's workspace (the per-run PVC on the cluster, ``workspace_root`` locally); every later task
  reads it back (`attach_parent`) and exports ``THINKFLOW_PARENT_RUN_ID`` so
  `thinkflow.tracking.stage_run` nests its run under it; `close_parent_run` (the exit handler) ends it
  with the pipeline's final state. The id never travels as a task input, so task caching still works;
- `record`: a stage's metrics into the KFP ``Metrics`` artifact, its outputs into the artifact metadata,
  and a summary (metrics prefixed by stage, output URIs as tags) onto the parent run, which is what
  ``thinkflow run`` prints at the end.
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

from pydantic import ValidationError

from thinkflow import storage
from thinkflow.config import ConfigError, StageConfig, StageResult, _format_errors, read_preset
from thinkflow.tracking import DEFAULT_EXPERIMENT, flatten

if TYPE_CHECKING:
    from thinkflow.registry import Registration

log = logging.getLogger("thinkflow.components")

C = TypeVar("C", bound=StageConfig)

PARENT_ENV = "THINKFLOW_PARENT_RUN_ID"
PARENT_FILE = Path(".thinkflow", "parent_run_id")
KFP_RUN_FILE = Path(".thinkflow", "kfp_run_id")
PIPELINE_RUN_ENV = "THINKFLOW_PIPELINE_RUN_ID"  # read by the registry for the lineage tags
WORKSPACE_ENV = "THINKFLOW_WORKSPACE"
# Tags on the parent run (also read by the local runner's summary).
TAG_PIPELINE = "thinkflow.pipeline"
TAG_KFP_RUN_ID = "thinkflow.kfp_run_id"
TAG_KFP_RUN_NAME = "thinkflow.kfp_run_name"
TAG_STATE = "thinkflow.pipeline_state"
TAG_ERROR = "thinkflow.pipeline_error"
TAG_OUTPUT = "thinkflow.output"
TAG_REGISTERED = "thinkflow.registered"
_METRIC_KEY = re.compile(r"[^\w\-. /]")


# ------------------------------------------------------------------------------------------- configs


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``base`` (nested dicts merged key by key, everything else replaced)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
    return base


def _integral(value: Any) -> Any:
    """KFP passes dict parameters as protobuf Structs, where every number is a float: 10 -> 10.0.

    Floats with no fractional part become ints again so that int fields (``max_steps``) and text fields
    alike get what the user wrote.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def stage_config(
    cls: type[C], preset: str | None, overrides: Mapping[str, Any] | None = None, **fixed: Any
) -> C:
    """The stage config: ``preset`` (shipped name or YAML path; empty: class defaults), then the
    ``overrides`` dict (nested keys merged), then the keys the component fixes (``None`` values are
    skipped, so the preset's value stays). Errors name the key, as on the command line."""
    data = read_preset(preset) if preset else {}
    deep_merge(data, _integral(dict(overrides or {})))
    for key, value in fixed.items():
        if value is not None:
            data[key] = value
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        where = f"{cls.__name__} (preset {preset!r} + overrides)" if preset else f"{cls.__name__} (overrides)"
        raise ConfigError(_format_errors(cls, exc, where)) from None


# ----------------------------------------------------------------------------------------- workspace


def workspace_dir(workspace: str | None, *parts: str) -> Path:
    """A directory in the run's workspace (``dsl.WORKSPACE_PATH_PLACEHOLDER`` as resolved by KFP).

    Outside a pipeline (the placeholder unresolved or empty) it falls back to ``THINKFLOW_WORKSPACE`` or
    ``~/.cache/thinkflow/workspace``.
    """
    root = workspace if workspace and "{{" not in workspace else None
    if root is None:
        root = os.environ.get(WORKSPACE_ENV) or str(storage.cache_dir() / "workspace")
    path = Path(root, *[p for p in parts if p])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _parent_file(workspace: str | None, name: Path = PARENT_FILE) -> Path | None:
    if not workspace or "{{" in workspace:
        return None
    return Path(workspace) / name


def _from_workspace(env: str, workspace: str | None, name: Path) -> str | None:
    value = os.environ.get(env)
    if not value:
        path = _parent_file(workspace, name)
        if path is not None and path.is_file():
            value = path.read_text(encoding="utf-8").strip() or None
    if value:
        os.environ[env] = value
    return value


def attach_parent(workspace: str | None) -> str | None:
    """The pipeline run's MLflow parent run id (from the environment, else the workspace), exported as
    ``THINKFLOW_PARENT_RUN_ID`` for `thinkflow.tracking.stage_run`; the KFP run id likewise as
    ``THINKFLOW_PIPELINE_RUN_ID`` (lineage). ``None`` when there is no parent run."""
    _from_workspace(PIPELINE_RUN_ENV, workspace, KFP_RUN_FILE)
    return _from_workspace(PARENT_ENV, workspace, PARENT_FILE)


# ---------------------------------------------------------------------------------------- parent run


def open_parent_run(
    pipeline: str,
    params: Mapping[str, Any],
    *,
    experiment: str = "",
    kfp_run_id: str = "",
    kfp_run_name: str = "",
    workspace: str | None = None,
) -> str:
    """Create the pipeline run's MLflow parent run (or adopt the one in ``THINKFLOW_PARENT_RUN_ID``, which
    the local runner creates), log the pipeline parameters on it, and write its id to the workspace."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run_id = os.environ.get(PARENT_ENV)
    if not run_id:
        name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        exp = mlflow.get_experiment_by_name(name)
        experiment_id = exp.experiment_id if exp else mlflow.create_experiment(name)
        run_name = kfp_run_name if kfp_run_name and "{{" not in kfp_run_name else pipeline
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    tags = {TAG_PIPELINE: pipeline, TAG_STATE: "RUNNING"}
    if kfp_run_id and "{{" not in kfp_run_id:
        tags[TAG_KFP_RUN_ID] = kfp_run_id
    if kfp_run_name and "{{" not in kfp_run_name:
        tags[TAG_KFP_RUN_NAME] = kfp_run_name
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    # Params are immutable in MLflow: a retried first task logs only what is not there yet.
    fresh = [Param(k, v) for k, v in flatten(_integral(dict(params))).items() if k not in existing]
    client.log_batch(run_id, params=fresh)
    path = _parent_file(workspace)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id, encoding="utf-8")
        if TAG_KFP_RUN_ID in tags:
            path.with_name(KFP_RUN_FILE.name).write_text(tags[TAG_KFP_RUN_ID], encoding="utf-8")
    os.environ[PARENT_ENV] = run_id
    log.info("pipeline %s: MLflow parent run %s", pipeline, run_id)
    return run_id


def close_parent_run(state: str, error: str = "", *, workspace: str | None = None) -> str | None:
    """End the parent run with the pipeline's final state (KFP ``SUCCEEDED`` -> MLflow ``FINISHED``)."""
    from mlflow.tracking import MlflowClient

    run_id = attach_parent(workspace)
    if not run_id:
        log.warning("no MLflow parent run to close (the first task did not run)")
        return None
    client = MlflowClient()
    client.set_tag(run_id, TAG_STATE, state or "UNKNOWN")
    if error:
        client.set_tag(run_id, TAG_ERROR, error[:5000])
    client.set_terminated(run_id, status="FINISHED" if state == "SUCCEEDED" else "FAILED")
    return run_id


def check_recipes(recipes: list[Any] | None) -> None:
    """Fail the first task early, naming the value, when the study's ``recipes`` parameter is wrong."""
    from thinkflow.evaluate.compare import RECIPES

    if recipes is None:
        return
    if not recipes:
        raise ValueError(f"pipeline parameter 'recipes' is empty; choose from {', '.join(RECIPES)}")
    for recipe in recipes:
        if recipe not in RECIPES:
            raise ValueError(
                f"pipeline parameter 'recipes': unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}"
            )
    dupes = sorted({r for r in recipes if recipes.count(r) > 1})
    if dupes:
        raise ValueError(f"pipeline parameter 'recipes': {', '.join(dupes)} listed twice")


# -------------------------------------------------------------------------------------------- stages


def run_stage(fn: Callable[[C], StageResult], cfg: C, workspace: str | None = None) -> StageResult:
    """Call one stage function with its config, nested under the pipeline's parent run.

    A stage function that logs no MLflow run of its own (e.g. validation) gets one here, with its config
    as params and its metrics, so that every task of a pipeline shows up under the parent run.
    """
    attach_parent(workspace)
    started = time.monotonic()
    result = fn(cfg)
    log.info("stage %s finished in %.1fs: %s", result.stage, time.monotonic() - started, result.output)
    if result.mlflow_run_id is None and os.environ.get(PARENT_ENV):
        import mlflow

        from thinkflow.tracking import stage_run

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
    parent = os.environ.get(PARENT_ENV)
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


def join(uri: str, *parts: str) -> str:
    """`thinkflow.storage.join` (local path or URI)."""
    return storage.join(uri, *parts)


def report_tags(result: StageResult, results: Any, label: str = "") -> dict[str, str]:
    """Parent-run tags pointing at an evaluation's report (the artifact URI when there is one)."""
    prefix = f"{label}/" if label else ""
    base = getattr(results, "uri", None) or result.output
    return {f"{TAG_OUTPUT}.{prefix}evaluate.report": storage.join(base, "report.md")}


def registered_tags(registration: Registration) -> dict[str, str]:
    """Parent-run tags of a registration (``thinkflow.registered.name/version/alias/gate/gate_reason``)."""
    out = {f"{TAG_REGISTERED}.{key}": getattr(registration, key) for key in ("name", "version", "alias")}
    if registration.gate is not None:
        out[f"{TAG_REGISTERED}.gate"] = registration.gate.decision
        out[f"{TAG_REGISTERED}.gate_reason"] = registration.gate.reason
    return out


def with_eval_dataset(cfg: Any, dataset: str | None) -> Any:
    """An `EvalConfig` that also evaluates ``dataset``'s eval split: appended as the ``dataset`` benchmark
    when the config lists benchmarks, else it becomes the config's ``data``."""
    if dataset is None:
        return cfg
    if isinstance(cfg.data, list):
        from thinkflow.evaluate import BenchmarkSpec

        if any(b.name == "dataset" for b in cfg.data):
            return cfg
        spec = BenchmarkSpec(name="dataset", path=dataset, split=cfg.split, limit=cfg.limit)
        return cfg.model_copy(update={"data": [*cfg.data, spec]})
    return cfg.model_copy(update={"data": dataset})
