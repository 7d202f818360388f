"""``vlaa_thinker``: build -> validate -> grpo -> evaluate (per benchmark, merged) -> register (the paper's recipe)."""

from typing import Any

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

NAME = "vlaa-thinker"
DESCRIPTION = (
    "ThinkFlow: the VLAA-Thinker recipe. Build the dataset, validate it, train with GRPO and the mixed "
    "reward, evaluate, register the model in MLflow (@challenger; the gate moves @champion)."
)


def build_dataset(
    opts: PipelineOptions, local: bool, start: Any, preset: Any, overrides: Any, build_shards: Any
) -> Any:
    """The dataset: ``plan_shards`` -> a ``ParallelFor`` of ``build_shard`` tasks (retried, each resuming its
    own journal) -> ``merge_dataset``. One graph for every ``build_shards``: with "1" it is one shard and the
    merge, which is what the unsharded build is (`thinkflow.data.build.run`), byte for byte. (An If/Else
    between ``build_dataset`` and the fan-out would need ``dsl.OneOf`` over a Dataset artifact, which
    kfp.local 2.17 rejects: ``get_dag_output_artifacts`` in kfp/local/orchestrator/orchestrator_utils.py
    takes exactly one artifact selector.)"""
    plan = place(c.plan_shards(build_shards=build_shards), opts, local=local).after(start)
    with dsl.ParallelFor(plan.output, parallelism=opts.build_parallelism or None, name="build-shards") as spec:
        part = place(c.build_shard(spec=spec, preset=preset, overrides=overrides), opts, local=local)
    merged = place(c.merge_dataset(shards=dsl.Collected(part.outputs["shard"])), opts, local=local)
    return merged.outputs["dataset"]


def evaluate_fanned_out(
    opts: PipelineOptions, local: bool, model: Any, dataset: Any, preset: Any, overrides: Any, resources: Any
) -> Any:
    """The evaluation: ``plan_eval`` -> a ``ParallelFor`` of ``evaluate`` GPU tasks, one per benchmark (``part``)
    -> ``merge_eval``, whose ``results`` is the one-task evaluation's metrics.json and report on the same
    predictions (`thinkflow.evaluate.merge`). One graph for any number of benchmarks, as the build's."""
    plan = place(c.plan_eval(preset=preset, overrides=overrides), opts, local=local)
    with dsl.ParallelFor(plan.output, name="eval-benchmarks") as name:
        part = place_gpu(
            c.evaluate(data=dataset, model=model, preset=preset, overrides=overrides, part=name),
            opts,
            local=local,
            **resources,
        )
    merged = place(c.merge_eval(parts=dsl.Collected(part.outputs["results"])), opts, local=local)
    return merged.outputs["results"]


def make(options: PipelineOptions | None = None, *, local: bool = False) -> GraphComponent:
    """The pipeline for the cluster (``local=False``: the compiled package) or for ``kfp.local``."""
    opts = options or PipelineOptions()

    @dsl.pipeline(name=NAME, description=DESCRIPTION, pipeline_config=opts.pipeline_config())
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
        """VLAA-Thinker: build -> validate -> grpo -> evaluate -> register.

        Args:
            model: Base model, a directory or s3:// URI (empty: the GRPO preset's model).
            data_preset: Dataset build preset (shipped name or YAML path).
            data_overrides: Keys overriding the build preset, e.g. {"seed": 1, "eval_fraction": 0.1}.
            validate_overrides: Keys of the validation config, e.g. {"max_bad_fraction": 0.01}.
            grpo_preset: GRPO preset (the paper's settings for Qwen2.5-VL-3B by default).
            grpo_overrides: Recipe hyperparameters, e.g. {"learning_rate": 1e-6, "max_steps": 500}.
            eval_preset: Evaluation preset.
            eval_overrides: Keys overriding the evaluation preset, e.g. {"max_new_tokens": 800}.
            model_name: Registered model name in MLflow.
            register_overrides: Keys of the registration config, e.g. {"gate": {"margin": 0.01}}.
            experiment: MLflow experiment of the pipeline's parent run.
            gpus_per_task: GPUs of the training task, a string such as "8" (one pod; torchrun uses them all).
            eval_gpus: GPUs of the evaluation task, a string such as "1".
            accelerator: Extended resource name of the GPUs.
            gpu_node_selector: Node selector of GPU tasks, e.g. {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}.
            gpu_tolerations: Tolerations of GPU tasks (a list of Kubernetes toleration objects).
            train_cpu: CPU request and limit of the training task.
            train_memory: Memory request and limit of the training task.
            eval_cpu: CPU request and limit of the evaluation task.
            eval_memory: Memory request and limit of the evaluation task.
            build_shards: Build the dataset in this many parallel shards, then merge them ("1": one shard).
        """
        gpu = dict(accelerator=accelerator, node_selector=gpu_node_selector, tolerations=gpu_tolerations)
        eval_resources = dict(gpus=eval_gpus, cpu=eval_cpu, memory=eval_memory, **gpu)
        finish = place(c.close_run(), opts, local=local)
        with dsl.ExitHandler(finish, name="mlflow-parent-run"):
            start = place(
                c.open_run(
                    pipeline=NAME,
                    experiment=experiment,
                    model=model,
                    data_preset=data_preset,
                    data_overrides=data_overrides,
                    grpo_preset=grpo_preset,
                    grpo_overrides=grpo_overrides,
                    eval_preset=eval_preset,
                    eval_overrides=eval_overrides,
                    model_name=model_name,
                ),
                opts,
                local=local,
            )
            dataset = build_dataset(opts, local, start, data_preset, data_overrides, build_shards)
            check = place(c.validate_data(dataset=dataset, overrides=validate_overrides), opts, local=local)
            train = place_gpu(
                c.grpo(
                    data=dataset, preset=grpo_preset, overrides=grpo_overrides, base_model_uri=model
                ).after(check),
                opts,
                local=local,
                gpus=gpus_per_task,
                cpu=train_cpu,
                memory=train_memory,
                **gpu,
            )
            evaluation = evaluate_fanned_out(
                opts, local, train.outputs["model"], dataset, eval_preset, eval_overrides, eval_resources
            )
            place(
                c.register(
                    model=train.outputs["model"],
                    evaluation=evaluation,
                    name=model_name,
                    overrides=register_overrides,
                ),
                opts,
                local=local,
            )

    return vlaa_thinker
