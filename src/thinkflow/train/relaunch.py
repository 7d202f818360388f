"""What every launch mode shares: `LaunchError`, the ``--set`` arguments that reproduce a stage config in the
launched processes (which train in-process), and the launched run's result read back from its ``lineage.json``."""

from __future__ import annotations

from typing import Any

import yaml

from thinkflow import storage
from thinkflow.config import StageResult
from thinkflow.errors import ThinkFlowError
from thinkflow.train.config import TrainStageConfig


class LaunchError(ThinkFlowError, RuntimeError):
    """A launch that could not start, or a launched job that failed; the message says why."""


def yaml_value(value: Any) -> str:
    """A value as one-line YAML that ``--set key=<text>`` parses back to the same value."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31 - 1, allow_unicode=True).rstrip("\n")
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return text


def config_overrides(cfg: TrainStageConfig) -> list[str]:
    """``["--set", "key=value", …]`` reproducing ``cfg`` in a launched process (which trains in-process)."""
    data = cfg.model_dump(mode="json", exclude_defaults=True)
    data.pop("launch", None)
    args: list[str] = []
    for key, value in data.items():
        args += ["--set", f"{key}={yaml_value(value)}"]
    args += ["--set", "launch.mode=process"]
    return args


def result_from_output(stage: str, cfg: TrainStageConfig, artifacts: dict[str, str] | None = None) -> StageResult:
    """The stage result of a launched run, read back from the ``lineage.json`` it wrote beside the model."""
    from thinkflow.train.lineage import read_lineage

    lineage = read_lineage(cfg.output_dir)
    if lineage is None:
        raise LaunchError(f"{stage}: the launched run finished but {cfg.output_dir} has no lineage.json")
    metrics = {k: float(v) for k, v in (lineage.get("metrics") or {}).items() if isinstance(v, int | float)}
    return StageResult(
        stage=stage,
        output=cfg.output_dir,
        metrics=metrics,
        artifacts={"lineage": storage.join(cfg.output_dir, "lineage.json"), **(artifacts or {})},
        mlflow_run_id=lineage.get("mlflow_run_id"),
    )
