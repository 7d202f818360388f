"""MLflow run handling shared by every stage: one run per stage, nested under the pipeline's parent run.

One store for every command: ``MLFLOW_TRACKING_URI`` when set (a server, or a local store such as
``sqlite:///mlflow.db``), else the local default of ``thinkflow run``: ``.thinkflow/mlflow.db`` with its
artifacts in ``.thinkflow/mlartifacts`` (`store_uri`, `use_store`). The parent run
comes from ``THINKFLOW_PARENT_RUN_ID`` (set by the pipeline for every task) and, if absent, from
``MLFLOW_RUN_ID`` / ``MLFLOW_PARENT_RUN_ID`` (`env.MLFLOW_PARENT_RUN_IDS`).

The parent run's lifecycle in a pipeline run: `open_parent_run` (first task) creates it and writes its id to
the run's workspace (the per-run PVC on the cluster, ``workspace_root`` with ``kfp.local``); every later task
reads it back (`attach_parent`) and exports ``THINKFLOW_PARENT_RUN_ID`` so `stage_run` nests under it;
`close_parent_run` (the exit handler) ends it with the pipeline's final state. The id never travels as a task
input, so task caching still works.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thinkflow import env

log = logging.getLogger("thinkflow.tracking")

DEFAULT_EXPERIMENT = "thinkflow"
DEFAULT_ROOT = ".thinkflow"  # `thinkflow run`'s root, and where every command's default store lives
# Files in the pipeline run's workspace that carry the parent run id and the KFP run id to later tasks.
PARENT_FILE = Path(".thinkflow", "parent_run_id")
KFP_RUN_FILE = Path(".thinkflow", "kfp_run_id")
# Tags on the parent run (also read by the local runner's summary).
TAG_PIPELINE = "thinkflow.pipeline"
TAG_KFP_RUN_ID = "thinkflow.kfp_run_id"
TAG_KFP_RUN_NAME = "thinkflow.kfp_run_name"
TAG_STATE = "thinkflow.pipeline_state"
TAG_ERROR = "thinkflow.pipeline_error"
TAG_OUTPUT = "thinkflow.output"
TAG_REGISTERED = "thinkflow.registered"


def local_store_uri(root: str | Path = DEFAULT_ROOT) -> str:
    """The sqlite store under ``root`` (``<root>/mlflow.db``; artifacts beside it in ``<root>/mlartifacts``)."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def store_uri(root: str | Path | None = None) -> str:
    """The MLflow store every command uses: ``MLFLOW_TRACKING_URI`` when set, else `local_store_uri` of ``root``."""
    return os.environ.get(env.MLFLOW_TRACKING_URI) or local_store_uri(root if root is not None else DEFAULT_ROOT)


def use_store(root: str | Path | None = None) -> str:
    """Point this process (and the processes it starts) at `store_uri`; returns the URI.

    The local default's folder is created so sqlite can open the file there.
    """
    uri = store_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    os.environ[env.MLFLOW_TRACKING_URI] = uri
    return uri


def parent_run_id() -> str | None:
    """The pipeline's parent run id from the environment, if any."""
    for name in env.MLFLOW_PARENT_RUN_IDS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def artifact_location(uri: str | None = None) -> str | None:
    """Artifacts beside a local sqlite store (``<db dir>/mlartifacts``) instead of ``./mlruns`` of the cwd;
    None for a server (it puts them where it is configured to). ``uri``: default, the current tracking URI."""
    if uri is None:
        import mlflow

        uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent.joinpath("mlartifacts").as_uri()
    return None


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> flat ``a.b`` keys with string values (MLflow params are flat strings, max 6000 chars)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


@contextmanager
def stage_run(stage: str, params: dict[str, Any] | None = None, *, experiment: str | None = None) -> Iterator[Any]:
    """Start (or continue) the MLflow run of one stage, nested under the parent run when one is given."""
    import mlflow

    experiment = experiment or os.environ.get(env.MLFLOW_EXPERIMENT_NAME) or DEFAULT_EXPERIMENT
    parent = parent_run_id()
    if parent:
        # The child run goes into the parent's experiment, whatever this process was told.
        experiment_id = mlflow.get_run(parent).info.experiment_id
    else:
        exp = mlflow.get_experiment_by_name(experiment)
        experiment_id = (
            exp.experiment_id if exp else mlflow.create_experiment(experiment, artifact_location=artifact_location())
        )
    env_run = os.environ.pop(env.MLFLOW_RUN_ID, None)  # start_run would resume it instead of nesting
    try:
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=stage, parent_run_id=parent, nested=parent is not None
        ) as run:
            mlflow.set_tag("thinkflow.stage", stage)
            if params:
                mlflow.log_params(flatten(params))
            yield run
    finally:
        if env_run is not None:
            os.environ[env.MLFLOW_RUN_ID] = env_run


# ------------------------------------------------------------------------------- the pipeline's parent run


def _in_workspace(workspace: str | None, name: Path) -> Path | None:
    """``name`` in the run's workspace; None outside a pipeline (no workspace, or KFP's placeholder unresolved)."""
    if not workspace or "{{" in workspace:
        return None
    return Path(workspace) / name


def _from_workspace(name: str, workspace: str | None, file: Path) -> str | None:
    value = os.environ.get(name)
    if not value:
        path = _in_workspace(workspace, file)
        if path is not None and path.is_file():
            value = path.read_text(encoding="utf-8").strip() or None
    if value:
        os.environ[name] = value
    return value


def attach_parent(workspace: str | None) -> str | None:
    """The pipeline run's MLflow parent run id (from the environment, else the workspace), exported as
    ``THINKFLOW_PARENT_RUN_ID`` for `stage_run`; the KFP run id likewise as ``THINKFLOW_PIPELINE_RUN_ID``
    (lineage). ``None`` when there is no parent run."""
    _from_workspace(env.PIPELINE_RUN_ID, workspace, KFP_RUN_FILE)
    return _from_workspace(env.PARENT_RUN_ID, workspace, PARENT_FILE)


def _resolved(value: str) -> bool:
    return bool(value) and "{{" not in value


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
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from thinkflow.config import integral

    client = MlflowClient()
    run_id = os.environ.get(env.PARENT_RUN_ID)
    if not run_id:
        name = experiment or os.environ.get(env.MLFLOW_EXPERIMENT_NAME) or DEFAULT_EXPERIMENT
        exp = mlflow.get_experiment_by_name(name)
        experiment_id = exp.experiment_id if exp else mlflow.create_experiment(name)
        run_name = kfp_run_name if _resolved(kfp_run_name) else pipeline
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    tags = {TAG_PIPELINE: pipeline, TAG_STATE: "RUNNING"}
    if _resolved(kfp_run_id):
        tags[TAG_KFP_RUN_ID] = kfp_run_id
    if _resolved(kfp_run_name):
        tags[TAG_KFP_RUN_NAME] = kfp_run_name
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    existing = client.get_run(run_id).data.params
    # Params are immutable in MLflow: a retried first task logs only what is not there yet.
    fresh = [Param(k, v) for k, v in flatten(integral(dict(params))).items() if k not in existing]
    client.log_batch(run_id, params=fresh)
    path = _in_workspace(workspace, PARENT_FILE)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id, encoding="utf-8")
        if TAG_KFP_RUN_ID in tags:
            path.with_name(KFP_RUN_FILE.name).write_text(tags[TAG_KFP_RUN_ID], encoding="utf-8")
    os.environ[env.PARENT_RUN_ID] = run_id
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
