"""Evaluation: benchmarks, generation, scoring through the rewards, reports. The stage is `run(cfg: EvalConfig)`;
the study's comparison of several evaluations is `thinkflow.evaluate.compare.compare(cfg: CompareConfig)`.

Names are imported lazily, so that importing one module (e.g. `thinkflow.evaluate.compare` for the study's
recipes, when a pipeline is defined) does not import the evaluation stage and what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thinkflow.evaluate.config import BenchmarkSpec, EvalConfig
    from thinkflow.evaluate.stage import run

_WHERE = {"BenchmarkSpec": "config", "EvalConfig": "config", "run": "stage"}

__all__ = ["BenchmarkSpec", "EvalConfig", "run"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"thinkflow.evaluate.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'thinkflow.evaluate' has no attribute {name!r}")
