"""``sft_vs_rl_study``: build once, fan out over recipes [grpo, sft, sft_grpo], evaluate each on the same
eval set, and write the paper-style comparison table (``compare_study``)."""

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from thinkflow.evaluate.compare import RECIPES
from thinkflow.pipelines import steps as c
from thinkflow.pipelines.common import (
    ACCELERATOR,
    CLUSTER_PRESETS,
    GPU_NODE_SELECTOR,
    GPU_TOLERATIONS,
    PipelineOptions,
    place,
    place_gpu,
)

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
        """SFT or RL? Train each recipe from the same data and base model, evaluate, compare.

        Args:
            recipes: Recipes to train, any of ["grpo", "sft", "sft_grpo"].
            baseline: Recipe the comparison table's delta column is measured against ("" for none).
            model: Base model, a directory or s3:// URI (empty: each training preset's model).
            data_preset: Dataset build preset (shipped name or YAML path).
            data_overrides: Keys overriding the build preset.
            validate_overrides: Keys of the validation config.
            sft_preset: SFT preset (recipes sft and sft_grpo).
            sft_overrides: SFT hyperparameters.
            grpo_preset: GRPO preset (recipes grpo and sft_grpo).
            grpo_overrides: GRPO hyperparameters.
            eval_preset: Evaluation preset (the same for every recipe).
            eval_overrides: Keys overriding the evaluation preset.
            experiment: MLflow experiment of the pipeline's parent run.
            gpus_per_task: GPUs of each training task, a string such as "8" (one pod; torchrun uses them all).
            eval_gpus: GPUs of each evaluation task, a string such as "1".
            accelerator: Extended resource name of the GPUs.
            gpu_node_selector: Node selector of GPU tasks.
            gpu_tolerations: Tolerations of GPU tasks (a list of Kubernetes toleration objects).
            train_cpu: CPU request and limit of each training task.
            train_memory: Memory request and limit of each training task.
            eval_cpu: CPU request and limit of each evaluation task.
            eval_memory: Memory request and limit of each evaluation task.
        """
        gpu = dict(accelerator=accelerator, node_selector=gpu_node_selector, tolerations=gpu_tolerations)
        train_res = dict(gpus=gpus_per_task, cpu=train_cpu, memory=train_memory, **gpu)
        finish = place(c.close_run(), opts, local=local)
        with dsl.ExitHandler(finish, name="mlflow-parent-run"):
            start = place(
                c.open_run(
                    pipeline=NAME,
                    experiment=experiment,
                    model=model,
                    data_preset=data_preset,
                    data_overrides=data_overrides,
                    sft_preset=sft_preset,
                    sft_overrides=sft_overrides,
                    grpo_preset=grpo_preset,
                    grpo_overrides=grpo_overrides,
                    eval_preset=eval_preset,
                    eval_overrides=eval_overrides,
                    recipes=recipes,
                ),
                opts,
                local=local,
            )
            build = place(c.build_dataset(preset=data_preset, overrides=data_overrides), opts, local=local).after(start)
            check = place(
                c.validate_data(dataset=build.outputs["dataset"], overrides=validate_overrides), opts, local=local
            )
            data = build.outputs["dataset"]
            with dsl.ParallelFor(recipes, parallelism=opts.study_fanout()) as recipe:
                with dsl.If(recipe == "grpo", "recipe-grpo"):
                    rl = place_gpu(
                        c.grpo(
                            data=data, preset=grpo_preset, overrides=grpo_overrides, base_model_uri=model, label=recipe
                        ).after(check),
                        opts,
                        local=local,
                        **train_res,
                    )
                with dsl.Elif(recipe == "sft", "recipe-sft"):
                    sft = place_gpu(
                        c.sft(
                            data=data, preset=sft_preset, overrides=sft_overrides, base_model_uri=model, label=recipe
                        ).after(check),
                        opts,
                        local=local,
                        **train_res,
                    )
                with dsl.Else("recipe-sft-grpo"):
                    first = place_gpu(
                        c.sft(
                            data=data, preset=sft_preset, overrides=sft_overrides, base_model_uri=model, label=recipe
                        ).after(check),
                        opts,
                        local=local,
                        **train_res,
                    )
                    then = place_gpu(
                        c.grpo(
                            data=data,
                            preset=grpo_preset,
                            overrides=grpo_overrides,
                            base_model=first.outputs["model"],
                            label=recipe,
                        ),
                        opts,
                        local=local,
                        **train_res,
                    )
                trained = dsl.OneOf(rl.outputs["model_uri"], sft.outputs["model_uri"], then.outputs["model_uri"])
                evaluation = place_gpu(
                    c.evaluate(
                        data=data, model_uri=trained, preset=eval_preset, overrides=eval_overrides, label=recipe
                    ),
                    opts,
                    local=local,
                    gpus=eval_gpus,
                    cpu=eval_cpu,
                    memory=eval_memory,
                    **gpu,
                )
            place(
                c.compare_study(evaluations=dsl.Collected(evaluation.outputs["results"]), baseline=baseline),
                opts,
                local=local,
            )

    return sft_vs_rl_study
