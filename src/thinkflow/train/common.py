"""What SFT and GRPO share: the config base, precision and device, model/processor loading with the
frozen vision tower and LoRA, the checkpoint workspace, the run loop (resume, MLflow) and the final save
(weights + processor + ``lineage.json``, uploaded when the output is ``s3://``)."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from thinkflow import env, storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.errors import ThinkFlowError
from thinkflow.format import SYSTEM_PROMPT
from thinkflow.train import checkpoints
from thinkflow.train.launch import LaunchSettings

log = logging.getLogger("thinkflow.train")

DEEPSPEED_PRESETS = ("zero2", "zero3")
VISION_TOWER_PATHS = ("model.visual", "visual", "model.vision_tower", "vision_tower", "model.vision_model")
VISION_MODULE_REGEX = r".*\b(visual|vision_tower|vision_model)\b.*"


class TrainError(ThinkFlowError, RuntimeError):
    """A training run that cannot start or finish; the message names the config key, file or record."""


class LoRASettings(BaseModel):
    """LoRA (peft) instead of full fine-tuning. Adapters are merged into the saved model by default."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    r: int = Field(default=64, gt=0)
    alpha: int = Field(default=128, gt=0)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"
    merge: bool = True  # merge the adapters into the weights of the final model (loadable without peft)


class TrainStageConfig(StageConfig):
    """Keys shared by ``thinkflow sft`` and ``thinkflow grpo``.

    ``model`` and ``data`` are local paths or ``s3://`` URIs; ``output_dir`` receives the final model (a
    directory loadable with ``AutoModelForImageTextToText``/``AutoProcessor``, with ``lineage.json``).
    Checkpoints go to ``checkpoint_dir`` (default: ``<output_dir>/checkpoints`` for a local output, else
    ``$THINKFLOW_WORKSPACE/<stage>-<hash of output_dir>``); a run started again with the same output
    resumes from the newest complete checkpoint there.
    """

    model: str = Field(min_length=1)
    data: str = Field(min_length=1)
    output_dir: str = Field(min_length=1)
    checkpoint_dir: str | None = None
    split: str = "sft"
    max_examples: int | None = Field(default=None, gt=0)  # use only the first N examples of the split
    # The system prompt of every training prompt (thinkflow.format.SYSTEM_PROMPT, the VLAA-Thinker prompt the
    # released models were trained with); "" trains without one. Evaluate with the same prompt.
    system_prompt: str = SYSTEM_PROMPT
    # Length of training: one epoch over the split unless max_steps > 0.
    num_train_epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, ge=-1)  # -1: not set (epochs decide)
    # Optimizer and schedule
    learning_rate: float = Field(default=1e-5, gt=0)
    lr_scheduler_type: str = "cosine"
    lr_scheduler_kwargs: dict[str, Any] = Field(default_factory=dict)  # e.g. {min_lr: 5.0e-7} for cosine_with_min_lr
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    seed: int = Field(default=42, ge=0)
    # Memory and precision
    per_device_train_batch_size: int = Field(default=1, gt=0)
    bf16: bool | None = None  # None: bf16 mixed precision on a bf16-capable GPU, fp32 on CPU
    model_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights as loaded (AMP on top)
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2" (default: transformers')
    gradient_checkpointing: bool = True
    deepspeed: str | None = None  # "zero2" | "zero3" (shipped JSON) | path to a DeepSpeed JSON
    freeze_vision_tower: bool = True  # the paper trains the language model only
    lora: LoRASettings = Field(default_factory=LoRASettings)
    # Image resolution bounds for Qwen2(.5)-VL processors (pixels); None keeps the processor's.
    min_pixels: int | None = Field(default=None, gt=0)
    max_pixels: int | None = Field(default=None, gt=0)
    # Checkpoints and logs
    save_steps: int = Field(default=50, gt=0)
    save_total_limit: int | None = Field(default=2, gt=0)
    logging_steps: int = Field(default=1, gt=0)
    dataloader_num_workers: int = Field(default=0, ge=0)
    # Any other TRL config field (SFTConfig / GRPOConfig), passed through as is; wins over the keys above.
    trl_args: dict[str, Any] = Field(default_factory=dict)
    launch: LaunchSettings = Field(default_factory=LaunchSettings)

    @field_validator("deepspeed")
    @classmethod
    def _check_deepspeed(cls, value: str | None) -> str | None:
        if value is None or value in DEEPSPEED_PRESETS or value.endswith(".json"):
            return value
        raise ValueError(f"expected one of {', '.join(DEEPSPEED_PRESETS)} or a path to a .json file")


# --------------------------------------------------------------------------------------------- runtime


def world_size() -> int:
    """Processes in this training job (``WORLD_SIZE`` set by torchrun/accelerate; 1 otherwise)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def rank() -> int:
    """Global rank of this process (0 when not launched distributed)."""
    return int(os.environ.get("RANK", "0"))


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def use_bf16(cfg: TrainStageConfig) -> bool:
    """bf16 mixed precision: the config's choice, else on for a bf16-capable CUDA device (never on CPU)."""
    if not cuda_available():
        return False
    if cfg.bf16 is not None:
        return cfg.bf16
    import torch

    return bool(torch.cuda.is_bf16_supported())


def deepspeed_config_path(value: str | None) -> str | None:
    """Path of a shipped ZeRO config (``zero2``/``zero3``) or the given JSON path (checked to exist)."""
    if value is None:
        return None
    if value in DEEPSPEED_PRESETS:
        return str(resources.files("thinkflow.train").joinpath("deepspeed", f"{value}.json"))
    path = Path(value)
    if not path.is_file():
        raise TrainError(f"deepspeed: config file not found: {value}")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TrainError(f"deepspeed: {value} is not valid JSON: {exc}") from None
    return str(path)


def ensure_log_handler() -> None:
    """Show ThinkFlow's INFO lines (e.g. ``resuming from …``) on stderr when nothing else configured logging."""
    logger = logging.getLogger("thinkflow")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def checkpoint_root(stage: str, cfg: TrainStageConfig) -> Path:
    """Where this run's checkpoints live (see `TrainStageConfig`)."""
    if cfg.checkpoint_dir:
        if storage.is_remote(cfg.checkpoint_dir):
            raise TrainError(f"checkpoint_dir must be a local path (a PVC on the cluster), got {cfg.checkpoint_dir!r}")
        return Path(cfg.checkpoint_dir)
    if not storage.is_remote(cfg.output_dir):
        return Path(cfg.output_dir) / "checkpoints"
    digest = hashlib.sha256(cfg.output_dir.rstrip("/").encode()).hexdigest()[:12]
    base = Path(os.environ.get(env.WORKSPACE) or storage.cache_dir() / "workspace")
    return base / f"{stage}-{digest}"


def trl_config(cls: type, values: dict[str, Any], extra: dict[str, Any], key: str = "trl_args") -> Any:
    """Build a TRL config dataclass from our values plus the ``trl_args`` passthrough (unknown keys named)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise TrainError(f"{key}: unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**{**values, **extra})


def common_trl_values(cfg: TrainStageConfig, output_dir: Path) -> dict[str, Any]:
    """TrainingArguments values that SFT and GRPO set the same way."""
    cuda = cuda_available()
    bf16 = use_bf16(cfg)
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": cfg.num_train_epochs,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "lr_scheduler_kwargs": dict(cfg.lr_scheduler_kwargs),
        "warmup_steps": cfg.warmup_ratio,  # transformers 5: a value below 1 is a fraction of the steps
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "bf16": bf16,
        "fp16": False,
        "use_cpu": not cuda,
        "activation_checkpointing": cfg.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
        "deepspeed": deepspeed_config_path(cfg.deepspeed),
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "report_to": "none",  # metrics go to MLflow through MLflowMetricsCallback
        "dataloader_num_workers": cfg.dataloader_num_workers,
        "disable_tqdm": not sys.stderr.isatty(),
    }


# ------------------------------------------------------------------------------------ model and data


def load_processor(model_dir: Path, cfg: TrainStageConfig, *, padding_side: str) -> Any:
    """The model's processor (`thinkflow.models.load.load_processor`) with the stage's pixel bounds and padding."""
    from thinkflow.models.load import load_processor as load_auto_processor

    processor = load_auto_processor(model_dir)
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        raise TrainError(f"model {cfg.model}: its processor has no image processor; is it a vision-language model?")
    if processor.tokenizer.chat_template is None and getattr(processor, "chat_template", None) is None:
        raise TrainError(f"model {cfg.model}: the processor has no chat template")
    from thinkflow.models.load import set_pixel_bounds

    try:
        set_pixel_bounds(processor, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    processor.tokenizer.padding_side = padding_side
    return processor


def load_model(model_dir: Path, cfg: TrainStageConfig) -> Any:
    """Load the policy with ``AutoModelForImageTextToText`` and freeze its vision tower when configured."""
    import torch
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": getattr(torch, cfg.model_dtype)}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(model_dir, **kwargs)
    if cfg.freeze_vision_tower:
        tower = vision_tower(model)
        if tower is None:
            raise TrainError(
                f"freeze_vision_tower: no vision tower found in {type(model).__name__}; set freeze_vision_tower=false"
            )
        tower.requires_grad_(False)
    return model


def vision_tower(model: Any) -> Any:
    """The vision encoder module of an image-text-to-text model (Qwen-VL's ``visual``), or None."""
    import torch

    for path in VISION_TOWER_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.Module):
            return obj
    return None


def peft_config(cfg: TrainStageConfig) -> Any:
    """A peft `LoraConfig` for the language model (vision modules excluded when the tower is frozen)."""
    if not cfg.lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        exclude_modules=VISION_MODULE_REGEX if cfg.freeze_vision_tower else None,
        task_type="CAUSAL_LM",
    )


def load_dataset_split(
    cfg: TrainStageConfig, columns: list[str], *, optional: list[str] | None = None, need: str | None = None
) -> Any:
    """The configured split as a `datasets.Dataset` with ``columns`` (+ the ``optional`` ones it has).

    ``need``: keep only rows where that column is set (e.g. SFT needs a ``completion``).
    """
    from thinkflow.data import load_split

    try:
        dataset = load_split(cfg.data, cfg.split, system_prompt=cfg.system_prompt)
    except (OSError, ValueError) as exc:  # missing files, bad records (RecordError), unknown split
        raise TrainError(f"data {cfg.data}: {exc}") from None
    if need is not None and need in dataset.column_names:
        dataset = dataset.filter(lambda row: row[need] is not None)
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise TrainError(
            f"data {cfg.data}: split {cfg.split!r} has no column(s) {', '.join(missing)}"
            + (f" (records need a {need!r})" if need in missing else "")
        )
    if len(dataset) == 0:
        raise TrainError(f"data {cfg.data}: split {cfg.split!r} has no usable records")
    if cfg.max_examples is not None:
        dataset = dataset.select(range(min(cfg.max_examples, len(dataset))))
    return dataset.select_columns(columns + [c for c in optional or [] if c in dataset.column_names])


def dataset_manifest_hash(data: str) -> str | None:
    """The dataset's manifest content hash, or None (with a warning) when it has no readable manifest."""
    from thinkflow.data import manifest_hash

    try:
        return manifest_hash(data)
    except (OSError, ValueError, KeyError, storage.StorageError) as exc:
        log.warning("data %s: no manifest hash for the lineage (%s)", data, exc)
        return None


def import_object(spec: str) -> Any:
    """Import ``package.module:name`` (or ``package.module.name``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise TrainError(f"cannot import {spec!r}: expected 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainError(f"cannot import {spec!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise TrainError(f"cannot import {spec!r}: module {module_name} has no {attr!r}") from None


# ------------------------------------------------------------------------------------------- run loop


@dataclass
class Prepared:
    """A trainer ready to train, and what the run loop needs to record about it."""

    trainer: Any
    processor: Any
    num_examples: int
    merge_lora: bool = True
    extra_lineage: dict[str, Any] = field(default_factory=dict)


def local_model_dir(cfg: TrainStageConfig) -> Path:
    """The base model as a local directory (``s3://`` models downloaded once to the cache)."""
    try:
        path = storage.localize(cfg.model)
    except storage.StorageError as exc:
        raise TrainError(f"model {cfg.model}: {exc}") from None
    if not (path / "config.json").is_file():
        raise TrainError(f"model {cfg.model}: not a model directory (no config.json in {path})")
    from thinkflow.models.load import processor_problem

    problem = processor_problem(path)
    if problem:
        raise TrainError(f"model {cfg.model}: {problem}")
    return path


def preflight(stage: str, cfg: TrainStageConfig) -> Path:
    """The checks that run before MLflow, a model or a folder is touched: the base model folder (weights
    config and processor), the split (exists, JSON lines, valid records, images present, not empty) and the
    output location (writable). Returns the local model directory."""
    from thinkflow.data.loader import check_split

    model_dir = local_model_dir(cfg)
    try:
        check_split(cfg.data, cfg.split)
    except (OSError, ValueError) as exc:  # RecordError is a ValueError
        raise TrainError(f"data {cfg.data}: {exc}") from None
    storage.check_writable(cfg.output_dir, "output_dir")
    if cfg.checkpoint_dir or not storage.is_remote(cfg.output_dir):
        storage.check_writable(checkpoint_root(stage, cfg), "checkpoint_dir")
    return model_dir


def run_stage(
    stage: str,
    cfg: TrainStageConfig,
    prepare: Callable[[TrainStageConfig, Path, Path, list[Any]], Prepared],
) -> StageResult:
    """Train one stage: resume, train, save, record (the body of `sft.run` and `grpo.run`).

    ``prepare(cfg, model_dir, checkpoint_root, callbacks)`` builds the trainer. Only the main process opens
    the MLflow run, writes the final model and the lineage, and uploads.
    """
    from thinkflow.tracking import stage_run
    from thinkflow.train.callbacks import MLflowMetricsCallback

    ensure_log_handler()
    model_dir = preflight(stage, cfg)  # fail on bad inputs before anything is created
    root = checkpoint_root(stage, cfg)
    main = rank() == 0
    if main:
        root.mkdir(parents=True, exist_ok=True)
    resume = checkpoints.prepare_resume(root, remove_incomplete=main)
    params = cfg.model_dump(mode="json")
    with stage_run(stage, params) if main else nullcontext() as run:
        run_id = run.info.run_id if run is not None else None
        callbacks: list[Any] = []
        metrics_cb = None
        if run_id is not None:
            import mlflow

            mlflow.set_tags({"thinkflow.output": cfg.output_dir, "thinkflow.checkpoints": str(root)})
            if resume is not None:
                mlflow.set_tag("thinkflow.resumed_from", str(resume))
            metrics_cb = MLflowMetricsCallback(run_id, world_size=world_size())
            callbacks.append(metrics_cb)
        prepared = prepare(cfg, model_dir, root, callbacks)
        trainer = prepared.trainer
        try:
            result = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        finally:
            if metrics_cb is not None:
                metrics_cb.flush()  # also when training fails: the metrics up to the failure are kept
        metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
        metrics["global_step"] = float(trainer.state.global_step)
        if metrics_cb is not None:
            metrics.update({k: v for k, v in metrics_cb.last.items() if k not in metrics})
        final_dir = root / "final" if storage.is_remote(cfg.output_dir) else Path(cfg.output_dir)
        save_final_model(trainer, prepared, final_dir)
        artifacts = {"checkpoints": str(root)}
        if main:
            from thinkflow.train.lineage import build_lineage, write_lineage

            lineage = build_lineage(
                stage=stage,
                config=params,
                base_model=cfg.model,
                data=cfg.data,
                manifest_hash=dataset_manifest_hash(cfg.data),
                split=cfg.split,
                num_examples=prepared.num_examples,
                global_step=trainer.state.global_step,
                metrics=metrics,
                mlflow_run_id=run_id,
                resumed_from=str(resume) if resume is not None else None,
            )
            lineage.update(prepared.extra_lineage)
            write_lineage(final_dir, lineage)
            if storage.is_remote(cfg.output_dir):
                storage.upload(final_dir, cfg.output_dir)
                shutil.rmtree(final_dir, ignore_errors=True)
            artifacts["lineage"] = storage.join(cfg.output_dir, "lineage.json")
            if run_id is not None:
                import mlflow

                mlflow.log_dict(lineage, "lineage.json")
        trainer.accelerator.wait_for_everyone()
        if main:
            log.info(
                "%s finished at global_step %d; model saved to %s", stage, trainer.state.global_step, cfg.output_dir
            )
    return StageResult(stage=stage, output=cfg.output_dir, metrics=metrics, artifacts=artifacts, mlflow_run_id=run_id)


def save_final_model(trainer: Any, prepared: Prepared, out_dir: Path) -> None:
    """Save weights + processor to ``out_dir`` so ``AutoModelForImageTextToText.from_pretrained`` loads it.

    A LoRA run saves its adapter, then (main process) merges it into a CPU copy of the base weights, unless
    ``lora.merge`` is false (then the adapter is what is saved).
    """
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    is_peft = isinstance(model, PeftModel)
    if not is_peft or not prepared.merge_lora:
        trainer.save_model(str(out_dir))
        if trainer.accelerator.is_main_process:
            prepared.processor.save_pretrained(out_dir)
            _drop_trainer_files(out_dir)
        return
    adapter_dir = out_dir.parent / f".{out_dir.name}.adapter"
    trainer.save_model(str(adapter_dir))
    if trainer.accelerator.is_main_process:
        from transformers import AutoModelForImageTextToText

        base_path = model.peft_config["default"].base_model_name_or_path
        base = AutoModelForImageTextToText.from_pretrained(base_path, dtype="auto")  # the base checkpoint's dtype
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
        merged.save_pretrained(out_dir)
        prepared.processor.save_pretrained(out_dir)
        shutil.rmtree(adapter_dir, ignore_errors=True)


def _drop_trainer_files(out_dir: Path) -> None:
    """Remove the pickled TrainingArguments the Trainer leaves beside the final weights (not model files)."""
    (out_dir / "training_args.bin").unlink(missing_ok=True)
