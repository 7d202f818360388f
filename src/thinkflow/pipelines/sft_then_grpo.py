"""``sft_then_grpo``: build -> validate -> sft -> grpo -> evaluate -> register (the paper's ablation)."""

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

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

NAME = "sft-then-grpo"
DESCRIPTION = (
    "ThinkFlow: the paper's ablation. Build and validate the dataset, SFT on the reasoning traces, then "
    "GRPO from the SFT model, evaluate, register in MLflow."
)


def make(options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline for the cluster (``local=False``: the compiled package) or for ``kfp.local``."""
    opts = options or PipelineOptions()

    @dsl.pipeline(name=NAME, description=DESCRIPTION, pipeline_config=opts.pipeline_config())
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
        """SFT then GRPO: build -> validate -> sft -> grpo -> evaluate -> register.

        Args:
            model: Base model, a directory or s3:// URI (empty: the SFT preset's model).
            data_preset: Dataset build preset (shipped name or YAML path).
            data_overrides: Keys overriding the build preset.
            validate_overrides: Keys of the validation config.
            sft_preset: SFT preset.
            sft_overrides: SFT hyperparameters, e.g. {"learning_rate": 1e-5, "num_train_epochs": 1}.
            grpo_preset: GRPO preset (starts from the SFT model).
            grpo_overrides: GRPO hyperparameters, e.g. {"learning_rate": 1e-6}.
            eval_preset: Evaluation preset.
            eval_overrides: Keys overriding the evaluation preset.
            model_name: Registered model name in MLflow.
            register_overrides: Keys of the registration config.
            experiment: MLflow experiment of the pipeline's parent run.
            gpus_per_task: GPUs of each training task, a string such as "8" (one pod; torchrun uses them all).
            eval_gpus: GPUs of the evaluation task, a string such as "1".
            accelerator: Extended resource name of the GPUs.
            gpu_node_selector: Node selector of GPU tasks.
            gpu_tolerations: Tolerations of GPU tasks (a list of Kubernetes toleration objects).
            train_cpu: CPU request and limit of each training task.
            train_memory: Memory request and limit of each training task.
            eval_cpu: CPU request and limit of the evaluation task.
            eval_memory: Memory request and limit of the evaluation task.
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
                    model_name=model_name,
                ),
                opts,
                local=local,
            )
            build = place(c.build_dataset(preset=data_preset, overrides=data_overrides), opts, local=local).after(start)
            check = place(
                c.validate_data(dataset=build.outputs["dataset"], overrides=validate_overrides), opts, local=local
            )
            sft = place_gpu(
                c.sft(
                    data=build.outputs["dataset"], preset=sft_preset, overrides=sft_overrides, base_model_uri=model
                ).after(check),
                opts,
                local=local,
                **train_res,
            )
            grpo = place_gpu(
                c.grpo(
                    data=build.outputs["dataset"],
                    preset=grpo_preset,
                    overrides=grpo_overrides,
                    base_model=sft.outputs["model"],
                ),
                opts,
                local=local,
                **train_res,
            )
            evaluation = place_gpu(
                c.evaluate(
                    data=build.outputs["dataset"],
                    model=grpo.outputs["model"],
                    preset=eval_preset,
                    overrides=eval_overrides,
                ),
                opts,
                local=local,
                gpus=eval_gpus,
                cpu=eval_cpu,
                memory=eval_memory,
                **gpu,
            )
            place(
                c.register(
                    model=grpo.outputs["model"],
                    evaluation=evaluation.outputs["results"],
                    name=model_name,
                    overrides=register_overrides,
                ),
                opts,
                local=local,
            )

    return sft_then_grpo
