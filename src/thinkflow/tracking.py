"""MLflow run handling shared by every stage: one run per stage, nested under the pipeline's parent run.

One store for every command: ``MLFLOW_TRACKING_URI`` when set (a server, or a local store such as
``sqlite:///mlflow.db``), else the local default of ``thinkflow run``: ``.thinkflow/mlflow.db`` with its
artifacts in ``.thinkflow/mlartifacts`` (`store_uri`, `use_store`). The parent run
comes from ``THINKFLOW_PARENT_RUN_ID`` (set by the pipeline for every task) and, if absent, from
``MLFLOW_RUN_ID`` / ``MLFLOW_PARENT_RUN_ID``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PARENT_ENV = ("THINKFLOW_PARENT_RUN_ID", "MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_ID")
DEFAULT_EXPERIMENT = "thinkflow"
DEFAULT_ROOT = ".thinkflow"  # `thinkflow run`'s root, and where every command's default store lives
TRACKING_ENV = "MLFLOW_TRACKING_URI"


def local_store_uri(root: str | Path = DEFAULT_ROOT) -> str:
    """The sqlite store under ``root`` (``<root>/mlflow.db``; artifacts beside it in ``<root>/mlartifacts``)."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def store_uri(root: str | Path | None = None) -> str:
    """The MLflow store every command uses: ``MLFLOW_TRACKING_URI`` when set, else `local_store_uri` of ``root``."""
    return os.environ.get(TRACKING_ENV) or local_store_uri(root if root is not None else DEFAULT_ROOT)


def use_store(root: str | Path | None = None) -> str:
    """Point this process (and the processes it starts) at `store_uri`; returns the URI.

    The local default's folder is created so sqlite can open the file there.
    """
    uri = store_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    os.environ[TRACKING_ENV] = uri
    return uri


def parent_run_id() -> str | None:
    """The pipeline's parent run id from the environment, if any."""
    for name in PARENT_ENV:
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

    experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    parent = parent_run_id()
    if parent:
        # The child run goes into the parent's experiment, whatever this process was told.
        experiment_id = mlflow.get_run(parent).info.experiment_id
    else:
        exp = mlflow.get_experiment_by_name(experiment)
        experiment_id = (
            exp.experiment_id if exp else mlflow.create_experiment(experiment, artifact_location=artifact_location())
        )
    env_run = os.environ.pop("MLFLOW_RUN_ID", None)  # start_run would resume it instead of nesting
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
            os.environ["MLFLOW_RUN_ID"] = env_run
