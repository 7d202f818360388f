"""``sft_vs_rl_study``: preflight, build once, fan out over recipes [grpo, sft, sft_grpo], evaluate each on the same
eval set, and write the paper-style comparison table (``compare_study``)."""

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

import thinkflow.pipelines.blocks as blocks
import thinkflow.pipelines.steps as c
from thinkflow.pipelines.common import (
    ACCELERATOR,
    CLUSTER_PRESETS,
    GPU_NODE_SELECTOR,
    GPU_TOLERATIONS,
    PipelineOptions,
    place,
    place_gpu,
)
from thinkflow.train.recipes import RECIPES

NAME = "sft-vs-rl-study"
DESCRIPTION = (
    "ThinkFlow: the SFT-or-RL study. Build the dataset once; train each recipe (GRPO, SFT, SFT then GRPO) "
    "in parallel; evaluate all on the same eval set; compare them in one table."
)


def make(options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline for the cluster (``local=False``: the compiled package) or for ``kfp.local``.

    Each ParallelFor iteration trains one recipe: ``grpo`` (GRPO from the base model), ``sft`` (SFT from
    the base model) or ``sft_grpo`` (SFT, then GRPO from it). The trained model's URI is picked with
    ``dsl.OneOf`` over the three branches and evaluated; ``compare_study`` collects the evaluations.
    """
    opts = options or PipelineOptions()

    @dsl.pipeline(name=NAME, description=DESCRIPTION, pipeline_config=opts.pipeline_config())
    @blocks.documented(
        "SFT or RL? Train each recipe from the same data and base model, evaluate, compare.",
        recipes='Recipes to train, any of ["grpo", "sft", "sft_grpo"].',
        baseline='Recipe the comparison table\'s delta column is measured against ("" for none).',
        model="Base model, a directory or s3:// URI (empty: each training preset's model).",
        sft_preset="SFT preset (recipes sft and sft_grpo).",
        grpo_preset="GRPO preset (recipes grpo and sft_grpo).",
        eval_preset="Evaluation preset (the same for every recipe).",
    )
    def sft_vs_rl_study(
        recipes: list = list(RECIPES),  # noqa: B006 (KFP reads defaults from the signature)
        baseline: str = "grpo",
        model: str = "",
        data_preset: str = CLUSTER_PRESETS["data"],
        data_overrides: dict = {},  # noqa: B006
        validate_overrides: dict = {},  # noqa: B006
        sft_preset: str = CLUSTER_PRESETS["sft"],
        sft_overrides: dict = {},  # noqa: B006
        grpo_preset: str = CLUSTER_PRESETS["grpo"],
        grpo_overrides: dict = {},  # noqa: B006
        eval_preset: str = CLUSTER_PRESETS["eval"],
        eval_overrides: dict = {},  # noqa: B006
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
            with dsl.ParallelFor(recipes, parallelism=opts.study_fanout()) as recipe:
                with dsl.If(recipe == "grpo", "recipe-grpo"):
                    rl = blocks.train(opts, local, "grpo", p, data=data, label=recipe, after=check)
                with dsl.Elif(recipe == "sft", "recipe-sft"):
                    sft = blocks.train(opts, local, "sft", p, data=data, label=recipe, after=check)
                with dsl.Else("recipe-sft-grpo"):
                    first = blocks.train(opts, local, "sft", p, data=data, label=recipe, after=check)
                    then = blocks.train(
                        opts, local, "grpo", p, data=data, base_model=first.outputs["model"], label=recipe
                    )
                trained = dsl.OneOf(rl.outputs["model_uri"], sft.outputs["model_uri"], then.outputs["model_uri"])
                task = c.evaluate(
                    data=data, model_uri=trained, preset=eval_preset, overrides=eval_overrides, label=recipe
                )
                evaluation = place_gpu(task, opts, local=local, **blocks.gpu_resources(p, "eval"))
            results = dsl.Collected(evaluation.outputs["results"])
            place(c.compare_study(evaluations=results, baseline=baseline), opts, local=local)

    return sft_vs_rl_study
