"""A stage config on this machine: world size and rank, precision, the DeepSpeed config, the checkpoint
folder, and the TrainingArguments values SFT and GRPO set the same way (plus the ``trl_args`` passthrough)."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

from thinkflow import env, storage
from thinkflow.train.config import DEEPSPEED_PRESETS, TrainError, TrainStageConfig


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
