"""How a pipeline's evaluate tasks shape an evaluation (used by the ``plan_eval``, ``evaluate`` and
``merge_eval`` components): the pipeline's dataset as one more benchmark, and the parent-run tag that points at
the report."""

from __future__ import annotations

from typing import Any

from thinkflow import storage
from thinkflow.config import StageResult
from thinkflow.evaluate.config import BenchmarkSpec, EvalConfig
from thinkflow.tracking import TAG_OUTPUT


def with_eval_dataset(cfg: EvalConfig, dataset: str | None) -> EvalConfig:
    """An `EvalConfig` that also evaluates ``dataset``'s eval split: appended as the ``dataset`` benchmark
    when the config lists benchmarks, else it becomes the config's ``data``."""
    if dataset is None:
        return cfg
    if isinstance(cfg.data, list):
        if any(b.name == "dataset" for b in cfg.data):
            return cfg
        spec = BenchmarkSpec(name="dataset", path=dataset, split=cfg.split, limit=cfg.limit)
        return cfg.model_copy(update={"data": [*cfg.data, spec]})
    return cfg.model_copy(update={"data": dataset})


def report_tags(result: StageResult, results: Any, label: str = "") -> dict[str, str]:
    """Parent-run tags pointing at an evaluation's report (the ``results`` artifact's URI when there is one)."""
    prefix = f"{label}/" if label else ""
    base = getattr(results, "uri", None) or result.output
    return {f"{TAG_OUTPUT}.{prefix}evaluate.report": storage.join(base, "report.md")}
