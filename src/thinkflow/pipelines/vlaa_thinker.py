"""``vlaa_thinker``: preflight -> build -> validate -> grpo -> evaluate (per benchmark, merged) -> register (the
paper's recipe)."""

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

import thinkflow.pipelines.blocks as blocks
from thinkflow.pipelines.common import ACCELERATOR, CLUSTER_PRESETS, GPU_NODE_SELECTOR, GPU_TOLERATIONS, PipelineOptions

NAME = "vlaa-thinker"
DESCRIPTION = (
    "ThinkFlow: the VLAA-Thinker recipe. Build the dataset, validate it, train with GRPO and the mixed "
    "reward, evaluate, register the model in MLflow (@challenger; the gate moves @champion)."
)


def make(options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline for the cluster (``local=False``: the compiled package) or for ``kfp.local``."""
    opts = options or PipelineOptions()

    @dsl.pipeline(name=NAME, description=DESCRIPTION, pipeline_config=opts.pipeline_config())
    @blocks.documented(
        "VLAA-Thinker: build -> validate -> grpo -> evaluate -> register.",
        gpus_per_task='GPUs of the training task, a string such as "8" (one pod; torchrun uses them all).',
    )
    def vlaa_thinker(
        model: str = "",
        data_preset: str = CLUSTER_PRESETS["data"],
        data_overrides: dict = {},  # noqa: B006 (KFP reads defaults from the signature)
        validate_overrides: dict = {},  # noqa: B006
        grpo_preset: str = CLUSTER_PRESETS["grpo"],
        grpo_overrides: dict = {},  # noqa: B006
        eval_preset: str = CLUSTER_PRESETS["eval"],
        eval_overrides: dict = {},  # noqa: B006
        model_name: str = "thinkflow-vlm",
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
        build_shards: str = "1",
    ) -> None:
        p = dict(locals())  # the parameters by name, for the blocks
        with blocks.pipeline_run(opts, local, NAME, p) as start:
            data, check = blocks.dataset(opts, local, start, p)
            trained = blocks.train(opts, local, "grpo", p, data=data, after=check)
            blocks.evaluate_and_register(opts, local, start, trained, data, p)

    return vlaa_thinker
