"""What a training stage reads: the base model (through `thinkflow.models.load`, the loader every stage
uses), its processor, the LoRA config, and the dataset split; plus `preflight`, the checks that run
before anything is loaded or created."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from thinkflow import storage
from thinkflow.models import load as models
from thinkflow.train.config import TrainError, TrainStageConfig
from thinkflow.train.settings import checkpoint_root

log = logging.getLogger("thinkflow.train")

VISION_MODULE_REGEX = r".*\b(visual|vision_tower|vision_model)\b.*"


def local_model_dir(cfg: TrainStageConfig) -> Path:
    """The base model as a local, checked model folder (``s3://`` models downloaded once to the cache)."""
    try:
        return models.resolve(cfg.model, need_processor=True)
    except models.ModelDirError as exc:
        raise TrainError(str(exc)) from None


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


def load_processor(model_dir: Path, cfg: TrainStageConfig, *, padding_side: str) -> Any:
    """The model's processor with the stage's pixel bounds and padding side (a chat VLM processor, checked)."""
    processor = models.load_processor(model_dir)
    problem = models.vlm_processor_problem(processor)
    if problem:
        raise TrainError(f"model {cfg.model}: {problem}")
    try:
        models.set_pixel_bounds(processor, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    processor.tokenizer.padding_side = padding_side
    return processor


def load_model(model_dir: Path, cfg: TrainStageConfig) -> Any:
    """The policy in ``model_dtype`` (`thinkflow.models.load.load_model`), its vision tower frozen when configured."""
    kwargs: dict[str, Any] = {}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        return models.load_model(
            model_dir, dtype=cfg.model_dtype, freeze_vision_tower=cfg.freeze_vision_tower, **kwargs
        )
    except ValueError as exc:  # the model has no vision tower to freeze
        raise TrainError(f"freeze_vision_tower: {exc}; set freeze_vision_tower=false") from None


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
    from thinkflow.data.loader import load_split

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
    from thinkflow.data.loader import manifest_hash

    try:
        return manifest_hash(data)
    except (OSError, ValueError, KeyError, storage.StorageError) as exc:
        log.warning("data %s: no manifest hash for the lineage (%s)", data, exc)
        return None
