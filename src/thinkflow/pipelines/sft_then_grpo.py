"""``sft_then_grpo``: preflight -> build -> validate -> sft -> grpo -> evaluate (per benchmark, merged) -> register
(the paper's ablation)."""

from kfp.dsl.graph_component import GraphComponent

import thinkflow.pipelines.blocks as blocks
from thinkflow.pipelines.common import PipelineOptions

NAME = "sft-then-grpo"
DESCRIPTION = (
    "ThinkFlow: the paper's ablation. Build and validate the dataset, SFT on the reasoning traces, then "
    "GRPO from the SFT model, evaluate, register in MLflow."
)
SUMMARY = "SFT then GRPO: build -> validate -> sft -> grpo -> evaluate -> register."
PARAMETERS = blocks.parameters(
    *("model", "data_preset", "data_overrides", "validate_overrides", "sft_preset", "sft_overrides"),
    *("grpo_preset", "grpo_overrides", "eval_preset", "eval_overrides", "model_name", "register_overrides"),
    *("experiment", "gpus_per_task", "eval_gpus", "accelerator", "gpu_node_selector", "gpu_tolerations"),
    *("train_cpu", "train_memory", "eval_cpu", "eval_memory"),
    defaults={"model_name": "thinkflow-vlm-sft-grpo"},
    docs={
        "model": "Base model, a directory or s3:// URI (empty: the SFT preset's model).",
        "grpo_preset": "GRPO preset (starts from the SFT model).",
    },
)


def make(options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline for the cluster (``local=False``: the compiled package) or for ``kfp.local``."""
    opts = options or PipelineOptions()

    def body(p: blocks.Params) -> None:
        with blocks.pipeline_run(opts, local, NAME, p) as start:
            data, check = blocks.dataset(opts, local, start, p)
            sft = blocks.train(opts, local, "sft", p, data=data, after=check)
            grpo = blocks.train(opts, local, "grpo", p, data=data, base_model=sft.outputs["model"])
            blocks.evaluate_and_register(opts, local, start, grpo, data, p)

    return blocks.pipeline_graph(NAME, DESCRIPTION, SUMMARY, PARAMETERS, opts, body)
