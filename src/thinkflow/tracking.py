"""MLflow run handling shared by every stage: one run per stage, nested under the pipeline's parent run.

Tracking URI from ``MLFLOW_TRACKING_URI`` (a server, or a local store such as ``sqlite:///mlflow.db``);
with none set, MLflow's own default local store is used, so stages work with no server. The parent run
comes from ``THINKFLOW_PARENT_RUN_ID`` (set by the pipeline for every task) and, if absent, from
``MLFLOW_RUN_ID`` / ``MLFLOW_PARENT_RUN_ID``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

PARENT_ENV = ("THINKFLOW_PARENT_RUN_ID", "MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_ID")
DEFAULT_EXPERIMENT = "thinkflow"


def parent_run_id() -> str | None:
    """The pipeline's parent run id from the environment, if any."""
    for name in PARENT_ENV:
        if os.environ.get(name):
            return os.environ[name]
    return None


def artifact_location() -> str | None:
    """Artifacts beside a local sqlite store (``<db dir>/mlartifacts``) instead of ``./mlruns`` of the cwd."""
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
