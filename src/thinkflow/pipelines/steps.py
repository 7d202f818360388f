"""The components the pipelines are made of, imported from their modules (one module per component)."""

from thinkflow.components.build_dataset import build_dataset
from thinkflow.components.build_shard import build_shard
from thinkflow.components.compare_study import compare_study
from thinkflow.components.evaluate import evaluate
from thinkflow.components.grpo import grpo
from thinkflow.components.merge_dataset import merge_dataset
from thinkflow.components.merge_eval import merge_eval
from thinkflow.components.plan_eval import plan_eval
from thinkflow.components.plan_shards import plan_shards
from thinkflow.components.preflight import preflight
from thinkflow.components.register import register
from thinkflow.components.run_context import close_run, open_run
from thinkflow.components.sft import sft
from thinkflow.components.validate_data import validate_data

__all__ = [
    "build_dataset",
    "build_shard",
    "close_run",
    "compare_study",
    "evaluate",
    "grpo",
    "merge_dataset",
    "merge_eval",
    "open_run",
    "plan_eval",
    "plan_shards",
    "preflight",
    "register",
    "sft",
    "validate_data",
]
