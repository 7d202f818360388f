"""KFP pipelines: ``vlaa_thinker``, ``sft_then_grpo``, ``sft_vs_rl_study``, and how to run them.

- `build(name, options, local=False)`: the pipeline (a KFP ``GraphComponent``);
- `compile_all(out_dir)` / `compile_pipeline(name, path)`: the packages committed in ``pipelines/``;
- `run_local(...)`: a whole pipeline with ``kfp.local`` on the embedded default (``thinkflow run``);
- `submit(...)`: upload a version and start a run or a recurring run on a KFP server (``thinkflow submit``);
- `compare(cfg)`: the study's comparison table (the ``compare_study`` component's stage function).

Names are imported lazily, so that a running component (where ``kfp.dsl`` has no decorators) can import
`thinkflow.pipelines.study` without building the pipelines.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from thinkflow.pipelines.common import PipelineOptions
    from thinkflow.pipelines.compile import compile_all, compile_pipeline, load_package
    from thinkflow.pipelines.local import LocalRunResult, run_local
    from thinkflow.pipelines.registry import DISPLAY_NAMES, PIPELINES, UnknownPipelineError, build
    from thinkflow.pipelines.remote import SubmitResult, submit
    from thinkflow.pipelines.study import CompareConfig, compare

_WHERE = {
    "PipelineOptions": "common",
    "compile_all": "compile",
    "compile_pipeline": "compile",
    "load_package": "compile",
    "LocalRunResult": "local",
    "run_local": "local",
    "DISPLAY_NAMES": "registry",
    "PIPELINES": "registry",
    "UnknownPipelineError": "registry",
    "build": "registry",
    "CompareConfig": "study",
    "compare": "study",
    "SubmitResult": "remote",
    "submit": "remote",
}

__all__ = [
    "DISPLAY_NAMES",
    "PIPELINES",
    "CompareConfig",
    "LocalRunResult",
    "PipelineOptions",
    "SubmitResult",
    "UnknownPipelineError",
    "build",
    "compare",
    "compile_all",
    "compile_pipeline",
    "load_package",
    "run_local",
    "submit",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"thinkflow.pipelines.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'thinkflow.pipelines' has no attribute {name!r}")
