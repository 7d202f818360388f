"""KFP components: one module per stage, each a lightweight ``@dsl.component`` whose body only builds the
stage config (preset + ``overrides`` + the artifact paths) and calls the stage's library function.

Import a component from its module: ``from thinkflow.components.grpo import grpo`` (the pipelines take
them all from `thinkflow.pipelines.steps`). Inputs and outputs are KFP artifacts (``Dataset``, ``Model``,
``Metrics``, ``Markdown``, ``HTML``) whose URIs live under the pipeline root: an S3/MinIO bucket on the
cluster, a local folder with ``kfp.local``. The I/O of each component is listed in the top-level
``components/README.md``; the images are named in `thinkflow.components.images`.

This package imports nothing from KFP by itself: inside a running component KFP sets ``_KFP_RUNTIME=true``
(``kfp.dsl`` then has no ``component`` decorator), and the bodies import `thinkflow.components.runtime`.
"""

# component -> module defining it
COMPONENTS = {
    "open_run": "run_context",
    "build_dataset": "build_dataset",
    "plan_shards": "plan_shards",
    "build_shard": "build_shard",
    "merge_dataset": "merge_dataset",
    "validate_data": "validate_data",
    "sft": "sft",
    "grpo": "grpo",
    "plan_eval": "plan_eval",
    "evaluate": "evaluate",
    "merge_eval": "merge_eval",
    "register": "register",
    "compare_study": "compare_study",
    "close_run": "run_context",
}
# Components that run on GPU nodes (trainer image); the rest run on CPU (base image).
GPU_COMPONENTS = ("sft", "grpo", "evaluate")

__all__ = ["COMPONENTS", "GPU_COMPONENTS"]
