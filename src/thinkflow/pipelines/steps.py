"""The components the pipelines are made of, imported from their modules (one module per component)."""

from thinkflow.components.build_dataset import build_dataset
from thinkflow.components.compare_study import compare_study
from thinkflow.components.evaluate import evaluate
from thinkflow.components.grpo import grpo
from thinkflow.components.register import register
from thinkflow.components.run_context import close_run, open_run
from thinkflow.components.sft import sft
from thinkflow.components.validate_data import validate_data

__all__ = [
    "build_dataset",
    "close_run",
    "compare_study",
    "evaluate",
    "grpo",
    "open_run",
    "register",
    "sft",
    "validate_data",
]
