"""The configs SFT and GRPO share: `TrainStageConfig` (every key both stages read), its LoRA section and
its ``launch`` section (where the stage runs: this process, torchrun, or a Kubeflow Trainer TrainJob)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thinkflow.config import StageConfig
from thinkflow.errors import ThinkFlowError
from thinkflow.format import SYSTEM_PROMPT

DEEPSPEED_PRESETS = ("zero2", "zero3")
DEFAULT_RUNTIME = "thinkflow-torch-distributed"  # the ClusterTrainingRuntime of charts/thinkflow


class TrainError(ThinkFlowError, RuntimeError):
    """A training run that cannot start or finish; the message names the config key, file or record."""


class LoRASettings(BaseModel):
    """LoRA (peft) instead of full fine-tuning. Adapters are merged into the saved model by default."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Train LoRA adapters instead of all language-model weights.")
    r: int = Field(default=64, gt=0, description="LoRA rank.")
    alpha: int = Field(default=128, gt=0, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA inputs.")
    target_modules: list[str] | str = Field(
        default="all-linear",
        description="Modules that get adapters (peft's target_modules; 'all-linear': every linear).",
    )
    merge: bool = Field(
        default=True, description="Merge the adapters into the weights of the final model (loadable without peft)."
    )


class TrainJobSettings(BaseModel):
    """How to run the stage as a Kubeflow Trainer TrainJob (``launch.mode: trainjob``)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = Field(
        default=None,
        description="Namespace of the TrainJob. None: the namespace of the pod this runs in (a KFP task: the "
        "pipelines namespace, where the chart's Role lets pipeline-runner create TrainJobs), else 'default'.",
    )
    name: str | None = Field(
        default=None,
        description="TrainJob name. None: thinkflow-<stage>-<attempt chain> in a pipeline run (a retry re-attaches), "
        "else thinkflow-<stage>-<UTC timestamp>.",
    )
    runtime: str = Field(default=DEFAULT_RUNTIME, description="The (Cluster)TrainingRuntime the job references.")
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = Field(
        default="ClusterTrainingRuntime", description="Kind of the referenced runtime."
    )
    image: str | None = Field(default=None, description="Trainer image. None: the runtime's image.")
    gpus_per_node: int = Field(default=8, ge=0, description="GPUs (and training processes) per node.")
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended resource name of a GPU.")
    cpu: str | int | float | None = Field(
        default=None, description="CPU request and limit per node (a Kubernetes quantity: 32, '500m')."
    )
    memory: str | int | None = Field(
        default=None, description="Memory request and limit per node (a Kubernetes quantity: '256Gi')."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables of the trainer.")
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables from Secrets: ENV_NAME: 'secret-name/key' (never the value itself).",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector of the training pods.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Tolerations of the training pods.")
    workspace_pvc: str | None = Field(
        default=None,
        description="PVC mounted at workspace_mount as the checkpoint workspace (THINKFLOW_WORKSPACE); "
        "ReadWriteMany for several nodes. A restarted job resumes from it.",
    )
    workspace_mount: str = Field(default="/workspace", description="Where the workspace PVC is mounted.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels of the TrainJob.")
    active_deadline_seconds: int | None = Field(
        default=None, gt=0, description="Kubernetes deadline of the job in seconds. None: no deadline."
    )
    wait: bool = Field(default=True, description="Wait for the job to finish (false: return once it is created).")
    timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds to wait for the job. None: until the job finishes."
    )


class LaunchSettings(BaseModel):
    """Where the stage runs: this process, torchrun on this machine, or a TrainJob on the cluster."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["process", "torchrun", "trainjob"] = Field(
        default="process",
        description="process: train here; torchrun: one process per GPU of this machine; trainjob: a Kubeflow "
        "Trainer TrainJob on the cluster.",
    )
    nproc_per_node: int | None = Field(default=None, gt=0, description="torchrun processes. None: one per visible GPU.")
    num_nodes: int = Field(default=1, gt=0, description="trainjob: training nodes.")
    trainjob: TrainJobSettings = Field(
        default_factory=TrainJobSettings, description="The TrainJob (launch.mode: trainjob)."
    )


class TrainStageConfig(StageConfig):
    """Keys shared by ``thinkflow sft`` and ``thinkflow grpo``.

    ``model`` and ``data`` are local paths or ``s3://`` URIs; ``output_dir`` receives the final model (a
    directory loadable with ``AutoModelForImageTextToText``/``AutoProcessor``, with ``lineage.json``).
    Checkpoints go to ``checkpoint_dir`` (default: ``<output_dir>/checkpoints`` for a local output, else
    ``$THINKFLOW_WORKSPACE/<stage>-<hash of output_dir>``); a run started again with the same output
    resumes from the newest complete checkpoint there.
    """

    model: str = Field(min_length=1, description="Base model: a local folder or s3:// URI (weights + processor).")
    data: str = Field(min_length=1, description="Dataset built by `thinkflow build`: a local folder or s3:// URI.")
    output_dir: str = Field(min_length=1, description="Where the final model goes (local folder or s3:// URI).")
    checkpoint_dir: str | None = Field(
        default=None,
        description="Local checkpoint folder. None: <output_dir>/checkpoints for a local output, else "
        "$THINKFLOW_WORKSPACE/<stage>-<hash of output_dir>.",
    )
    split: str = Field(default="sft", description="Dataset split to train on.")
    max_examples: int | None = Field(default=None, gt=0, description="Use only the first N examples of the split.")
    system_prompt: str = Field(
        default=SYSTEM_PROMPT,
        description="System prompt of every training prompt (default: the VLAA-Thinker prompt the released models "
        "were trained with); '' trains without one. Evaluate with the same prompt.",
    )
    num_train_epochs: float = Field(default=1.0, gt=0, description="Epochs over the split (unless max_steps > 0).")
    max_steps: int = Field(default=-1, ge=-1, description="Optimizer steps; -1: not set (epochs decide).")
    learning_rate: float = Field(default=1e-5, gt=0, description="Peak learning rate.")
    lr_scheduler_type: str = Field(default="cosine", description="transformers learning-rate schedule name.")
    lr_scheduler_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Schedule arguments, e.g. {min_lr: 5.0e-7} for cosine_with_min_lr."
    )
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0, description="Share of the steps spent warming up.")
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping norm.")
    seed: int = Field(default=42, ge=0, description="Random seed (sampling, shuffling, initialisation).")
    per_device_train_batch_size: int = Field(default=1, gt=0, description="Micro-batch per device.")
    bf16: bool | None = Field(
        default=None, description="bf16 mixed precision. None: on for a bf16-capable GPU, fp32 on CPU."
    )
    model_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="Dtype of the weights as loaded (mixed precision applies on top)."
    )
    attn_implementation: str | None = Field(
        default=None, description="Attention kernel, e.g. 'sdpa', 'flash_attention_2'. None: transformers' default."
    )
    gradient_checkpointing: bool = Field(default=True, description="Recompute activations in the backward pass.")
    deepspeed: str | None = Field(
        default=None, description="'zero2' | 'zero3' (shipped DeepSpeed configs) | path to a DeepSpeed JSON."
    )
    freeze_vision_tower: bool = Field(default=True, description="Train the language model only (the paper's setting).")
    lora: LoRASettings = Field(default_factory=LoRASettings, description="LoRA instead of full fine-tuning.")
    min_pixels: int | None = Field(
        default=None, gt=0, description="Lower bound of an image's resolution in pixels. None: the processor's."
    )
    max_pixels: int | None = Field(
        default=None, gt=0, description="Upper bound of an image's resolution in pixels. None: the processor's."
    )
    save_steps: int = Field(default=50, gt=0, description="Save a checkpoint every N optimizer steps.")
    save_total_limit: int | None = Field(default=2, gt=0, description="Checkpoints kept. None: all.")
    logging_steps: int = Field(default=1, gt=0, description="Log metrics every N optimizer steps.")
    dataloader_num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes.")
    trl_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other TRL config field (SFTConfig / GRPOConfig), passed through as is; wins over the keys "
        "above.",
    )
    launch: LaunchSettings = Field(
        default_factory=LaunchSettings, description="Where the stage runs (this process, torchrun, a TrainJob)."
    )

    @field_validator("deepspeed")
    @classmethod
    def _check_deepspeed(cls, value: str | None) -> str | None:
        if value is None or value in DEEPSPEED_PRESETS or value.endswith(".json"):
            return value
        raise ValueError(f"expected one of {', '.join(DEEPSPEED_PRESETS)} or a path to a .json file")
