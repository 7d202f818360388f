"""``sft_vs_rl_study``: preflight, build once, fan out over recipes [grpo, sft, sft_grpo], evaluate each on the same
eval set, and write the paper-style comparison table (``compare_study``)."""

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

import thinkflow.pipelines.blocks as blocks
import thinkflow.pipelines.steps as c
from thinkflow.pipelines.common import PipelineOptions, place, place_gpu

NAME = "sft-vs-rl-study"
DESCRIPTION = (
    "ThinkFlow: the SFT-or-RL study. Build the dataset once; train each recipe (GRPO, SFT, SFT then GRPO) "
    "in parallel; evaluate all on the same eval set; compare them in one table."
)
SUMMARY = "SFT or RL? Train each recipe from the same data and base model, evaluate, compare."
PARAMETERS = blocks.parameters(
    *("recipes", "baseline", "model", "data_preset", "data_overrides", "validate_overrides"),
    *("sft_preset", "sft_overrides", "grpo_preset", "grpo_overrides", "eval_preset", "eval_overrides"),
    *("experiment", "gpus_per_task", "eval_gpus", "accelerator", "gpu_node_selector", "gpu_tolerations"),
    *("train_cpu", "train_memory", "eval_cpu", "eval_memory"),
    docs={
        "model": "Base model, a directory or s3:// URI (empty: each training preset's model).",
        "sft_preset": "SFT preset (recipes sft and sft_grpo).",
        "grpo_preset": "GRPO preset (recipes grpo and sft_grpo).",
        "eval_preset": "Evaluation preset (the same for every recipe).",
    },
)


def make(options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline for the cluster (``local=False``: the compiled package) or for ``kfp.local``.

    Each ParallelFor iteration trains one recipe: ``grpo`` (GRPO from the base model), ``sft`` (SFT from
    the base model) or ``sft_grpo`` (SFT, then GRPO from it). The trained model's URI is picked with
    ``dsl.OneOf`` over the three branches and evaluated; ``compare_study`` collects the evaluations.
    """
    opts = options or PipelineOptions()

    def body(p: blocks.Params) -> None:
        with blocks.pipeline_run(opts, local, NAME, p) as start:
            data, check = blocks.dataset(opts, local, start, p)
            with dsl.ParallelFor(p["recipes"], parallelism=opts.study_fanout()) as recipe:
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
                    data=data, model_uri=trained, preset=p["eval_preset"], overrides=p["eval_overrides"], label=recipe
                )
                evaluation = place_gpu(task, opts, local=local, **blocks.gpu_resources(p, "eval"))
            results = dsl.Collected(evaluation.outputs["results"])
            place(c.compare_study(evaluations=results, baseline=p["baseline"]), opts, local=local)

    return blocks.pipeline_graph(NAME, DESCRIPTION, SUMMARY, PARAMETERS, opts, body)
