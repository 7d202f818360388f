"""``vlaa_thinker``: preflight -> build -> validate -> grpo -> evaluate (per benchmark, merged) -> register (the
paper's recipe)."""

from kfp.dsl.graph_component import GraphComponent

import thinkflow.pipelines.blocks as blocks
from thinkflow.pipelines.common import PipelineOptions

NAME = "vlaa-thinker"
DESCRIPTION = (
    "ThinkFlow: the VLAA-Thinker recipe. Build the dataset, validate it, train with GRPO and the mixed "
    "reward, evaluate, register the model in MLflow (@challenger; the gate moves @champion)."
)
SUMMARY = "VLAA-Thinker: build -> validate -> grpo -> evaluate -> register."
PARAMETERS = blocks.parameters(
    *("model", "data_preset", "data_overrides", "validate_overrides", "grpo_preset", "grpo_overrides"),
    *("eval_preset", "eval_overrides", "model_name", "register_overrides", "experiment"),
    *("gpus_per_task", "eval_gpus", "accelerator", "gpu_node_selector", "gpu_tolerations"),
    *("train_cpu", "train_memory", "eval_cpu", "eval_memory", "build_shards"),
    docs={"gpus_per_task": 'GPUs of the training task, a string such as "8" (one pod; torchrun uses them all).'},
)


def make(options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline for the cluster (``local=False``: the compiled package) or for ``kfp.local``."""
    opts = options or PipelineOptions()

    def body(p: blocks.Params) -> None:
        with blocks.pipeline_run(opts, local, NAME, p) as start:
            data, check = blocks.dataset(opts, local, start, p)
            trained = blocks.train(opts, local, "grpo", p, data=data, after=check)
            blocks.evaluate_and_register(opts, local, start, trained, data, p)

    return blocks.pipeline_graph(NAME, DESCRIPTION, SUMMARY, PARAMETERS, opts, body)
