"""The pipelines by name (the names ``thinkflow run/compile/submit --pipeline`` take)."""

from __future__ import annotations

from collections.abc import Callable

from kfp.dsl.graph_component import GraphComponent

import thinkflow.pipelines.sft_then_grpo as sft_then_grpo
import thinkflow.pipelines.sft_vs_rl_study as sft_vs_rl_study
import thinkflow.pipelines.vlaa_thinker as vlaa_thinker
from thinkflow.errors import UsageError, did_you_mean
from thinkflow.pipelines.common import PipelineOptions

Factory = Callable[..., GraphComponent]

PIPELINES: dict[str, Factory] = {
    "vlaa_thinker": vlaa_thinker.make,
    "sft_then_grpo": sft_then_grpo.make,
    "sft_vs_rl_study": sft_vs_rl_study.make,
}
DISPLAY_NAMES = {
    "vlaa_thinker": vlaa_thinker.NAME,
    "sft_then_grpo": sft_then_grpo.NAME,
    "sft_vs_rl_study": sft_vs_rl_study.NAME,
}


class UnknownPipelineError(UsageError, ValueError):
    """A pipeline name that is not one of `PIPELINES`."""


def check_name(name: str) -> str:
    """``name`` if it is a known pipeline (``-`` and ``_`` both accepted), else a clear error."""
    key = name.replace("-", "_")
    if key not in PIPELINES:
        hint = did_you_mean(key, PIPELINES)
        raise UnknownPipelineError(f"unknown pipeline {name!r}{hint}; choose one of {', '.join(PIPELINES)}")
    return key


def build(name: str, options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline ``name`` for the cluster (``local=False``) or for ``kfp.local``."""
    return PIPELINES[check_name(name)](options, local=local)
