"""The pieces the three pipelines are assembled from, and their parameters, each declared once.

A pipeline is its list of parameter names (`parameters`: type, default and description from `PARAMETERS`, with
the pipeline's own defaults or descriptions where they differ) and a body that wires these blocks over the
parameters by name (`pipeline_graph` turns the two into the pipeline):

- `pipeline_run`: the exit handler that closes the MLflow parent run, then ``preflight`` (the first task: what
  the run needs answers, or the run fails in seconds naming what is missing) and ``open_run``;
- `dataset`: build (one task, or ``plan_shards`` -> shards -> ``merge_dataset``) then ``validate_data``;
- `train`: one ``sft`` or ``grpo`` GPU task from the base model or from an earlier task's model;
- `evaluate_fanned_out` and `evaluate_and_register`: one ``evaluate`` task per benchmark, merged, then ``register``.

KFP reads a pipeline's inputs from its function's signature and their descriptions from the ``Args:`` of its
docstring (kfp/dsl/component_factory.py, ``extract_component_interface``: ``inspect.signature`` and
``inspect.getdoc``), and calls it with one channel per parameter in signature order (kfp/dsl/graph_component.py):
`pipeline_graph` builds exactly that. `tests/unit/test_pipelines_examples.py` validates every ``e.g.`` example
in the descriptions against the config that consumes it.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

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

Params = dict[str, Any]  # the pipeline's parameters by name (KFP pipeline channels while the graph is built)


class Parameter(NamedTuple):
    """One pipeline parameter: its type (``str``, ``dict`` or ``list``), default and description."""

    type: type
    default: Any
    description: str


PARAMETERS: dict[str, Parameter] = {
    "recipes": Parameter(list, list(RECIPES), 'Recipes to train, any of ["grpo", "sft", "sft_grpo"].'),
    "baseline": Parameter(
        str, "grpo", 'Recipe the comparison table\'s delta column is measured against ("" for none).'
    ),
    "model": Parameter(str, "", "Base model, a directory or s3:// URI (empty: the training preset's model)."),
    "data_preset": Parameter(str, CLUSTER_PRESETS["data"], "Dataset build preset (shipped name or YAML path)."),
    "data_overrides": Parameter(dict, {}, 'Keys overriding the build preset, e.g. {"seed": 1, "eval_fraction": 0.1}.'),
    "validate_overrides": Parameter(dict, {}, 'Keys of the validation config, e.g. {"max_bad_fraction": 0.01}.'),
    "sft_preset": Parameter(str, CLUSTER_PRESETS["sft"], "SFT preset."),
    "sft_overrides": Parameter(dict, {}, 'SFT hyperparameters, e.g. {"learning_rate": 1e-5, "num_train_epochs": 1}.'),
    "grpo_preset": Parameter(
        str, CLUSTER_PRESETS["grpo"], "GRPO preset (the paper's settings for Qwen2.5-VL-3B by default)."
    ),
    "grpo_overrides": Parameter(dict, {}, 'GRPO hyperparameters, e.g. {"learning_rate": 1e-6, "max_steps": 500}.'),
    "eval_preset": Parameter(str, CLUSTER_PRESETS["eval"], "Evaluation preset."),
    "eval_overrides": Parameter(dict, {}, 'Keys overriding the evaluation preset, e.g. {"max_new_tokens": 800}.'),
    "model_name": Parameter(str, "thinkflow-vlm", "Registered model name in MLflow."),
    "register_overrides": Parameter(dict, {}, 'Keys of the registration config, e.g. {"gate": {"margin": 0.01}}.'),
    "experiment": Parameter(str, "thinkflow", "MLflow experiment of the pipeline's parent run."),
    "gpus_per_task": Parameter(
        str, "8", 'GPUs of each training task, a string such as "8" (one pod; torchrun uses them all).'
    ),
    "eval_gpus": Parameter(str, "1", 'GPUs of each evaluation task, a string such as "1".'),
    "accelerator": Parameter(str, ACCELERATOR, "Extended resource name of the GPUs."),
    "gpu_node_selector": Parameter(
        dict, GPU_NODE_SELECTOR, 'Node selector of GPU tasks, e.g. {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}.'
    ),
    "gpu_tolerations": Parameter(
        list, GPU_TOLERATIONS, "Tolerations of GPU tasks (a list of Kubernetes toleration objects)."
    ),
    "train_cpu": Parameter(str, "32", "CPU request and limit of each training task."),
    "train_memory": Parameter(str, "256Gi", "Memory request and limit of each training task."),
    "eval_cpu": Parameter(str, "8", "CPU request and limit of each evaluation task."),
    "eval_memory": Parameter(str, "64Gi", "Memory request and limit of each evaluation task."),
    "build_shards": Parameter(
        str, "1", 'Build the dataset in this many parallel shards, then merge them ("1": one shard).'
    ),
}


def parameters(*names: str, defaults: Params | None = None, docs: dict[str, str] | None = None) -> dict[str, Parameter]:
    """A pipeline's parameters, in this order, from `PARAMETERS`, with this pipeline's own ``defaults`` and
    descriptions (``docs``) where they differ."""
    unknown = sorted(set(names) - set(PARAMETERS))
    if unknown:
        raise KeyError(f"no pipeline parameter(s) {', '.join(unknown)} in PARAMETERS")
    defaults, docs = defaults or {}, docs or {}
    return {
        name: Parameter(
            PARAMETERS[name].type,
            copy.deepcopy(defaults.get(name, PARAMETERS[name].default)),
            docs.get(name, PARAMETERS[name].description),
        )
        for name in names
    }


def pipeline_graph(
    name: str,
    description: str,
    summary: str,
    params: dict[str, Parameter],
    options: PipelineOptions,
    body: Callable[[Params], None],
) -> GraphComponent:
    """``@dsl.pipeline`` over a function with one argument per parameter (signature and ``Args:`` docstring built
    from ``params``, see the module's doc) that calls ``body`` with the arguments by name."""
    names = list(params)

    def pipeline(*args: Any) -> None:
        body(dict(zip(names, args, strict=True)))

    pipeline.__name__ = pipeline.__qualname__ = name.replace("-", "_")
    pipeline.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.type)
            for n, p in params.items()
        ]
    )
    args = "\n".join(f"    {n}: {p.description}" for n, p in params.items())
    pipeline.__doc__ = f"{summary}\n\nArgs:\n{args}\n"
    return dsl.pipeline(name=name, description=description, pipeline_config=options.pipeline_config())(pipeline)


def gpu_resources(p: Params, kind: Literal["train", "eval"]) -> dict[str, Any]:
    """The `place_gpu` keywords of a training or an evaluation task, from the pipeline parameters."""
    return {
        "gpus": p["gpus_per_task"] if kind == "train" else p["eval_gpus"],
        "cpu": p[f"{kind}_cpu"],
        "memory": p[f"{kind}_memory"],
        "accelerator": p["accelerator"],
        "node_selector": p["gpu_node_selector"],
        "tolerations": p["gpu_tolerations"],
    }


@contextmanager
def pipeline_run(opts: PipelineOptions, local: bool, pipeline: str, p: Params) -> Iterator[dsl.PipelineTask]:
    """The body of every pipeline: inside the exit handler that ends the MLflow parent run (``close_run``), the
    ``preflight`` task first, then ``open_run`` (the parent run, the pipeline parameters as its params). Yields
    ``open_run``: the tasks of the body run after it."""
    finish = place(c.close_run(), opts, local=local)
    with dsl.ExitHandler(finish, name="mlflow-parent-run"):
        check = place(
            c.preflight(data_preset=p["data_preset"], data_overrides=p["data_overrides"], model=p["model"]),
            opts,
            local=local,
        )
        logged = {k: v for k, v in p.items() if k in (c.open_run.component_spec.inputs or {})}
        yield place(c.open_run(pipeline=pipeline, **logged), opts, local=local).after(check)


def dataset(opts: PipelineOptions, local: bool, start: dsl.PipelineTask, p: Params) -> tuple[Any, dsl.PipelineTask]:
    """The dataset and the task that validated it (train after it).

    With a ``build_shards`` parameter: ``plan_shards`` -> a ``ParallelFor`` of ``build_shard`` tasks (retried, each
    resuming its own journal) -> ``merge_dataset``. One graph for every ``build_shards``: with "1" it is one shard
    and the merge, which is what the unsharded build is (`thinkflow.data.build.run`), byte for byte. (An If/Else
    between ``build_dataset`` and the fan-out would need ``dsl.OneOf`` over a Dataset artifact, which kfp.local
    2.17 rejects: ``get_dag_output_artifacts`` in kfp/local/orchestrator/orchestrator_utils.py takes exactly one
    artifact selector.) Without it: one ``build_dataset`` task."""
    preset, overrides = p["data_preset"], p["data_overrides"]
    if "build_shards" in p:
        plan = place(c.plan_shards(build_shards=p["build_shards"]), opts, local=local).after(start)
        with dsl.ParallelFor(plan.output, parallelism=opts.build_parallelism or None, name="build-shards") as spec:
            part = place(c.build_shard(spec=spec, preset=preset, overrides=overrides), opts, local=local)
        built = place(c.merge_dataset(shards=dsl.Collected(part.outputs["shard"])), opts, local=local)
    else:
        built = place(c.build_dataset(preset=preset, overrides=overrides), opts, local=local).after(start)
    data = built.outputs["dataset"]
    check = place(c.validate_data(dataset=data, overrides=p["validate_overrides"]), opts, local=local)
    return data, check


def train(
    opts: PipelineOptions,
    local: bool,
    stage: Literal["sft", "grpo"],
    p: Params,
    *,
    data: Any,
    base_model: Any = None,
    label: Any = None,
    after: dsl.PipelineTask | None = None,
) -> dsl.PipelineTask:
    """One training task (``stage``'s preset and overrides) on ``data``: from ``base_model`` (an earlier task's
    model) when given, else from the pipeline's ``model`` parameter."""
    component = c.sft if stage == "sft" else c.grpo
    inputs: dict[str, Any] = {"data": data, "preset": p[f"{stage}_preset"], "overrides": p[f"{stage}_overrides"]}
    if base_model is None:
        inputs["base_model_uri"] = p["model"]
    else:
        inputs["base_model"] = base_model
    if label is not None:
        inputs["label"] = label
    task = component(**inputs)
    if after is not None:
        task.after(after)
    return place_gpu(task, opts, local=local, **gpu_resources(p, "train"))


def evaluate_fanned_out(
    opts: PipelineOptions, local: bool, start: dsl.PipelineTask, model: Any, data: Any, p: Params
) -> Any:
    """The evaluation: ``plan_eval`` (after ``start``) -> a ``ParallelFor`` of ``evaluate`` GPU tasks, one per
    benchmark (``part``) -> ``merge_eval``, whose ``results`` is the one-task evaluation's metrics.json and report
    on the same predictions (`thinkflow.evaluate.merge`). One graph for any number of benchmarks, as the build's."""
    preset, overrides = p["eval_preset"], p["eval_overrides"]
    plan = place(c.plan_eval(preset=preset, overrides=overrides), opts, local=local).after(start)
    with dsl.ParallelFor(plan.output, name="eval-benchmarks") as name:
        task = c.evaluate(data=data, model=model, preset=preset, overrides=overrides, part=name)
        part = place_gpu(task, opts, local=local, **gpu_resources(p, "eval"))
    merged = place(c.merge_eval(parts=dsl.Collected(part.outputs["results"])), opts, local=local)
    return merged.outputs["results"]


def evaluate_and_register(
    opts: PipelineOptions, local: bool, start: dsl.PipelineTask, trained: dsl.PipelineTask, data: Any, p: Params
) -> None:
    """Evaluate the ``trained`` task's model (`evaluate_fanned_out`) and register it with that evaluation (the gate
    decides whether it becomes ``@champion``)."""
    model = trained.outputs["model"]
    evaluation = evaluate_fanned_out(opts, local, start, model, data, p)
    register = c.register(model=model, evaluation=evaluation, name=p["model_name"], overrides=p["register_overrides"])
    place(register, opts, local=local)
