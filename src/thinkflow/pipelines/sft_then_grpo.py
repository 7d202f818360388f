"""``sft_then_grpo``: preflight -> build -> validate -> sft -> grpo -> evaluate (per benchmark, merged) -> register
(the paper's ablation)."""

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

import thinkflow.pipelines.blocks as blocks
from thinkflow.pipelines.common import ACCELERATOR, CLUSTER_PRESETS, GPU_NODE_SELECTOR, GPU_TOLERATIONS, PipelineOptions

NAME = "sft-then-grpo"
DESCRIPTION = (
    "ThinkFlow: the paper's ablation. Build and validate the dataset, SFT on the reasoning traces, then "
    "GRPO from the SFT model, evaluate, register in MLflow."
)


def make(options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline for the cluster (``local=False``: the compiled package) or for ``kfp.local``."""
    opts = options or PipelineOptions()

    @dsl.pipeline(name=NAME, description=DESCRIPTION, pipeline_config=opts.pipeline_config())
    @blocks.documented(
        "SFT then GRPO: build -> validate -> sft -> grpo -> evaluate -> register.",
        model="Base model, a directory or s3:// URI (empty: the SFT preset's model).",
        grpo_preset="GRPO preset (starts from the SFT model).",
    )
    def sft_then_grpo(
        model: str = "",
        data_preset: str = CLUSTER_PRESETS["data"],
        data_overrides: dict = {},  # noqa: B006 (KFP reads defaults from the signature)
        validate_overrides: dict = {},  # noqa: B006
        sft_preset: str = CLUSTER_PRESETS["sft"],
        sft_overrides: dict = {},  # noqa: B006
        grpo_preset: str = CLUSTER_PRESETS["grpo"],
        grpo_overrides: dict = {},  # noqa: B006
        eval_preset: str = CLUSTER_PRESETS["eval"],
        eval_overrides: dict = {},  # noqa: B006
        model_name: str = "thinkflow-vlm-sft-grpo",
        register_overrides: dict = {},  # noqa: B006
        experiment: str = "thinkflow",
        gpus_per_task: str = "8",
        eval_gpus: str = "1",
        accelerator: str = ACCELERATOR,
        gpu_node_selector: dict = GPU_NODE_SELECTOR,
        gpu_tolerations: list = GPU_TOLERATIONS,
        train_cpu: str = "32",
        train_memory: str = "256Gi",
        eval_cpu: str = "8",
        eval_memory: str = "64Gi",
    ) -> None:
        p = dict(locals())  # the parameters by name, for the blocks
        with blocks.pipeline_run(opts, local, NAME, p) as start:
            data, check = blocks.dataset(opts, local, start, p)
            sft = blocks.train(opts, local, "sft", p, data=data, after=check)
            grpo = blocks.train(opts, local, "grpo", p, data=data, base_model=sft.outputs["model"])
            blocks.evaluate_and_register(opts, local, start, grpo, data, p)

    return sft_then_grpo
