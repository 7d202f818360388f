"""What the three pipelines share: compile-time options, and how a task is placed on the cluster.

Two kinds of settings:

- **pipeline parameters** (chosen per run, in the KFP UI or ``thinkflow submit --params``): model,
  presets and ``*_overrides`` (recipe hyperparameters), GPUs per training task, the accelerator resource,
  the GPU node selector and tolerations (kfp-kubernetes JSON helpers, so they can be parameters), CPU and
  memory. They are the signature of each pipeline function.
- **compile-time options** (`PipelineOptions`, fixed in the package): the workspace PVC size and class,
  the ``/dev/shm`` size, retries and backoff of training tasks, the caching policy per component, the
  names of the Secrets and the ConfigMap, images. KFP cannot take these from run parameters.

``local=True`` builds the same graph for ``kfp.local``: no Kubernetes platform config, no resources
(``kfp.local`` cannot resolve resource placeholders), no retries; the workspace stays (``kfp.local``
maps it to a local folder).
"""

from __future__ import annotations

from typing import Any

from kfp import dsl, kubernetes
from kfp.dsl import pipeline_channel
from pydantic import BaseModel, ConfigDict, Field

from thinkflow import env
from thinkflow.components import images

# From the chart's thinkflow-env ConfigMap.
CONFIG_MAP_KEYS = (env.MLFLOW_TRACKING_URI, env.AWS_ENDPOINT_URL, env.MLFLOW_S3_ENDPOINT_URL, env.AWS_DEFAULT_REGION)
S3_KEYS = (env.AWS_ACCESS_KEY_ID, env.AWS_SECRET_ACCESS_KEY)  # the S3 Secret
MLFLOW_KEYS = env.MLFLOW_CREDENTIALS
TEACHER_KEYS = ("OPENAI_API_KEY",)  # the key in the teachers' Secret
# Components that call the teachers / the open-ended reward model (OpenAI-compatible endpoints); preflight checks them.
TEACHER_COMPONENTS = ("preflight", "build_dataset", "build_shard", "grpo", "evaluate")
DATA_COMPONENTS = ("build_dataset", "build_shard", "merge_dataset")  # data_cpu / data_memory
TRAINING_COMPONENTS = ("sft", "grpo")
# Retried with backoff: they resume from their journal (build_shard) or newest checkpoint in the workspace.
RETRIED_COMPONENTS = ("build_shard", *TRAINING_COMPONENTS)
# Components that score open-ended answers with the chart's rewardModel (thinkflow serve-reward); preflight checks it.
REWARD_COMPONENTS = ("preflight", "grpo", "evaluate")
REWARD_URL_KEY = env.REWARD_URL  # thinkflow-env, when rewardModel.enabled
REWARD_TOKEN_KEY = env.REWARD_API_KEY  # the reward model's Secret
IMAGE_ENV = env.IMAGE  # recorded in the registered version's lineage tags

# Defaults of the pipeline parameters shared by the pipelines (the cluster's: the compiled packages).
GPU_NODE_SELECTOR = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
ACCELERATOR = "nvidia.com/gpu"


class PipelineOptions(BaseModel):
    """Compile-time settings of a pipeline package (the defaults build the committed ``pipelines/*.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Per-run workspace PVC (dsl.PipelineConfig workspace): checkpoints, so retried tasks resume.
    workspace_size: str = "500Gi"
    workspace_storage_class: str | None = None  # None: the cluster's default StorageClass
    workspace_access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    # /dev/shm of GPU tasks (NCCL, dataloader workers): a memory-backed emptyDir.
    shm_size: str = "64Gi"
    # Retries of training tasks (they resume from the newest checkpoint in the workspace).
    retries: int = Field(default=3, ge=0)
    backoff_duration: str = "60s"
    backoff_factor: float = Field(default=2.0, ge=1.0)
    backoff_max_duration: str = "3600s"
    # Caching policy: whether KFP may reuse a task's outputs from an earlier run with the same inputs.
    # The MLflow parent run and registration always run (they have effects outside the artifacts).
    cache: dict[str, bool] = Field(
        default_factory=lambda: {
            "build_dataset": True,
            "plan_shards": True,
            "build_shard": True,
            "merge_dataset": True,
            "validate_data": True,
            "sft": True,
            "grpo": True,
            "evaluate": True,
            "plan_eval": True,
            "merge_eval": True,
            "compare_study": True,
        }
    )
    # Requests/limits of CPU-only tasks (data, validation, registration, comparison, parent run).
    cpu: str = "2"
    memory: str = "8Gi"
    data_cpu: str = "8"
    data_memory: str = "32Gi"
    # Names of what the Helm chart creates in the pipelines namespace.
    env_config_map: str = "thinkflow-env"
    s3_secret: str = "thinkflow-s3"
    mlflow_secret: str = "thinkflow-mlflow-pipeline"  # the pipelines' MLflow user (EDIT), not the admin
    teachers_secret: str = "thinkflow-teachers"
    reward_secret: str = "thinkflow-reward-model"
    # Environment variables that get the teachers' API key (the `api_key_env` names the presets use; the
    # chart's in-cluster endpoints share one key).
    teacher_key_envs: tuple[str, ...] = ("OPENAI_API_KEY", "CAPTIONER_API_KEY", "REASONER_API_KEY", "REWRITER_API_KEY")
    # Endpoints of the chart's inference models in the thinkflow-env ConfigMap (`base_url_env` of the shipped build
    # presets' teachers), passed to the tasks that call them when the chart publishes them.
    teacher_url_envs: tuple[str, ...] = tuple(
        env.TEACHER_BASE_URL.format(name=name) for name in ("CAPTIONER", "REASONER", "REWRITER")
    )
    # Pod label the chart's NetworkPolicies admit (besides KFP's own pipelines.kubeflow.org/v2_component).
    pod_labels: dict[str, str] = Field(default_factory=lambda: {"thinkflow.io/client": "true"})
    # Images (`thinkflow.components.images`); change with `thinkflow compile --registry/--tag`.
    base_image: str = images.BASE_IMAGE
    trainer_image: str = images.TRAINER_IMAGE
    # Build fan-out (`build_shards` > 1): how many shards build at once (0: all). A compile-time option:
    # kfp's ParallelFor takes `parallelism: Optional[int]` only, no run parameter (kfp/dsl/tasks_group.py).
    build_parallelism: int = Field(default=8, ge=0)
    # Study fan-out: how many recipes train at once (0: all). None: all with a ReadWriteMany workspace, one at a time
    # with ReadWriteOnce (the chart's default storage): parallel pods on other nodes cannot attach a RWO volume
    # (Multi-Attach error), and a zonal RWO volume would pin every branch to one zone anyway.
    study_parallelism: int | None = Field(default=None, ge=0)

    def study_fanout(self) -> int | None:
        """``dsl.ParallelFor(parallelism=...)`` of the study's recipes (None: unbounded)."""
        if self.study_parallelism is None:
            return None if "ReadWriteMany" in self.workspace_access_modes else 1
        return self.study_parallelism or None

    def pipeline_config(self) -> dsl.PipelineConfig:
        """The per-run workspace PVC."""
        patch: dict[str, Any] = {"accessModes": list(self.workspace_access_modes)}
        if self.workspace_storage_class:
            patch["storageClassName"] = self.workspace_storage_class
        return dsl.PipelineConfig(
            workspace=dsl.WorkspaceConfig(
                size=self.workspace_size, kubernetes=dsl.KubernetesWorkspaceConfig(pvcSpecPatch=patch)
            )
        )


def component_name(task: dsl.PipelineTask) -> str:
    """The component behind a task (``grpo`` for tasks ``grpo``, ``grpo-2``...)."""
    return str(task.component_spec.name).replace("-", "_")


def cluster_env(task: dsl.PipelineTask, options: PipelineOptions) -> None:
    """Endpoints from the chart's ConfigMap and credentials from Secrets: references only, never values."""
    name = component_name(task)
    kubernetes.use_config_map_as_env(task, options.env_config_map, {k: k for k in CONFIG_MAP_KEYS})
    kubernetes.use_secret_as_env(task, options.s3_secret, {k: k for k in S3_KEYS})
    # MLflow may run without authentication; the teachers' key is needed only by presets that call them.
    kubernetes.use_secret_as_env(task, options.mlflow_secret, {k: k for k in MLFLOW_KEYS}, optional=True)
    if name in TEACHER_COMPONENTS:
        (key,) = TEACHER_KEYS
        for key_env in options.teacher_key_envs:
            kubernetes.use_secret_as_env(task, options.teachers_secret, {key: key_env}, optional=True)
        urls = {k: k for k in options.teacher_url_envs}
        kubernetes.use_config_map_as_env(task, options.env_config_map, urls, optional=True)
    if name in REWARD_COMPONENTS:  # optional: the chart publishes them only with rewardModel.enabled
        kubernetes.use_config_map_as_env(task, options.env_config_map, {REWARD_URL_KEY: REWARD_URL_KEY}, optional=True)
        kubernetes.use_secret_as_env(task, options.reward_secret, {REWARD_TOKEN_KEY: REWARD_TOKEN_KEY}, optional=True)
    for key, value in options.pod_labels.items():
        kubernetes.add_pod_label(task, key, value)


def place(task: dsl.PipelineTask, options: PipelineOptions, *, local: bool) -> dsl.PipelineTask:
    """A CPU task: caching policy, image, and on the cluster its env, secrets and requests."""
    name = component_name(task)
    task.set_caching_options(options.cache.get(name, False))
    if local:
        return task
    task.set_container_image(options.base_image).set_env_variable(IMAGE_ENV, options.base_image)
    cpu, memory = (options.data_cpu, options.data_memory) if name in DATA_COMPONENTS else (options.cpu, options.memory)
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
    return _retried(task, options)


def place_gpu(
    task: dsl.PipelineTask,
    options: PipelineOptions,
    *,
    local: bool,
    gpus: Any,
    accelerator: Any,
    node_selector: Any,
    tolerations: Any,
    cpu: Any,
    memory: Any,
) -> dsl.PipelineTask:
    """A GPU task: the accelerator and its count, CPU/memory, the GPU node selector and tolerations (all
    pipeline parameters), ``/dev/shm`` in memory, retries with backoff for training, env and secrets."""
    name = component_name(task)
    task.set_caching_options(options.cache.get(name, False))
    if local:
        return task
    task.set_container_image(options.trainer_image).set_env_variable(IMAGE_ENV, options.trainer_image)
    task.set_accelerator_type(accelerator).set_accelerator_limit(gpus)
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
    # The resource setters put the parameters' placeholders in the pod spec but do not record them as inputs of
    # the task, so the compiler would not pass them into an enclosing sub-DAG (ExitHandler, ParallelFor,
    # Condition) and KFP's driver would fail with "parent DAG does not have input parameter" (kfp 2.17:
    # compiler_utils.get_inputs_for_all_groups reads task.channel_inputs only). Record them.
    task.register_pipeline_channels(
        [v for v in (gpus, accelerator, cpu, memory) if isinstance(v, pipeline_channel.PipelineChannel)]
    )
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=options.shm_size  # noqa: S108
    )
    return _retried(task, options)


def _retried(task: dsl.PipelineTask, options: PipelineOptions) -> dsl.PipelineTask:
    """Retries with backoff for the tasks that resume from the workspace, then the cluster env and secrets."""
    if component_name(task) in RETRIED_COMPONENTS and options.retries:
        task.set_retry(
            num_retries=options.retries,
            backoff_duration=options.backoff_duration,
            backoff_factor=options.backoff_factor,
            backoff_max_duration=options.backoff_max_duration,
        )
    cluster_env(task, options)
    return task


# Presets the compiled packages default to (cluster scale) and those the local run uses (tiny, CPU).
CLUSTER_PRESETS = {
    "data": "vlaa-distill",
    "sft": "qwen2.5-vl-3b-sft",
    "grpo": "qwen2.5-vl-3b-grpo",
    "eval": "paper-eval",
}
LOCAL_PRESETS = {"data": "tiny-data", "sft": "tiny-sft", "grpo": "tiny-grpo", "eval": "tiny-eval"}


def options_for_images(
    registry: str | None = None, tag: str | None = None, rwx_storage_class: str | None = None
) -> PipelineOptions:
    """Default options with the images taken from another registry and/or tag; with ``rwx_storage_class``, the
    workspace is ReadWriteMany on that StorageClass (the study's recipes then train in parallel)."""
    reg, version = registry or images.REGISTRY, tag or images.TAG
    workspace: dict[str, Any] = {}
    if rwx_storage_class:
        workspace = {"workspace_storage_class": rwx_storage_class, "workspace_access_modes": ("ReadWriteMany",)}
    return PipelineOptions(
        base_image=images.image(images.BASE_REPOSITORY, reg, version),
        trainer_image=images.image(images.TRAINER_REPOSITORY, reg, version),
        **workspace,
    )


# Pipeline parameter prefix -> the stage config its ``<prefix>_overrides`` merge into, and placeholders for the
# keys the task fills itself (input artifacts), so the overrides are checked before anything runs.
OVERRIDE_CONFIGS: dict[str, tuple[str, dict[str, str]]] = {
    "data": ("thinkflow.data.build:BuildConfig", {"output_dir": "<dataset>"}),
    "validate": ("thinkflow.data.validate:ValidateConfig", {"data": "<dataset>"}),
    "sft": ("thinkflow.train.sft:SFTConfig", {"model": "<model>", "data": "<dataset>", "output_dir": "<out>"}),
    "grpo": ("thinkflow.train.grpo:GRPOStageConfig", {"model": "<model>", "data": "<dataset>", "output_dir": "<out>"}),
    "eval": ("thinkflow.evaluate.config:EvalConfig", {"model": "<model>", "data": "<dataset>", "output_dir": "<out>"}),
    "register": ("thinkflow.registry.stage:RegisterConfig", {"model": "<model>", "eval": "<evaluation>"}),
}


def check_overrides(arguments: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
    """Validate every ``<stage>_overrides`` argument against its stage config (preset + overrides), the way
    the task will, so a wrong key fails at submit/run time naming the parameter and the key."""
    import importlib

    from thinkflow.config import ConfigError, stage_config

    merged = {**(defaults or {}), **arguments}
    for prefix, (target, placeholders) in OVERRIDE_CONFIGS.items():
        overrides = merged.get(f"{prefix}_overrides")
        if not overrides:
            continue
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        preset = merged.get(f"{prefix}_preset") or None
        try:
            stage_config(cls, preset, overrides, **placeholders)
        except ConfigError as exc:
            raise ConfigError(f"pipeline parameter {prefix}_overrides: {exc}") from None
