"""Supervised fine-tuning on the ``sft`` split with TRL's `SFTTrainer` — ``thinkflow sft``.

Each record becomes a prompt/completion pair: the prompt is the paper's system prompt plus the user turn
(image + question), the completion is the assistant's ``<think>…</think><answer>…</answer>`` response.
Only the completion is supervised (``completion_only_loss``: prompt, image and padding tokens get label
-100). The vision tower is frozen by default (as in the paper); full fine-tuning or LoRA (``lora.enabled``),
gradient checkpointing, bf16 on GPU, DeepSpeed ZeRO-2/3 (``deepspeed: zero2|zero3``).

Python: ``thinkflow.train.sft.run(SFTConfig(model=..., data=..., output_dir=...))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from thinkflow.config import StageResult
from thinkflow.train.config import TrainStageConfig
from thinkflow.train.inputs import load_dataset_split, load_model, load_processor, peft_config
from thinkflow.train.settings import common_trl_values, trl_config
from thinkflow.train.stage import Prepared, run_stage

STAGE = "sft"
SFT_COLUMNS = ["prompt", "completion", "image"]


class SFTConfig(TrainStageConfig):
    """Keys of ``thinkflow sft``; see `TrainStageConfig` for the shared ones."""

    split: str = Field(default="sft", description="Split of the dataset to train on.")
    learning_rate: float = Field(default=1e-5, gt=0, description="Peak learning rate.")
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0, description="Share of the steps spent warming up.")
    per_device_train_batch_size: int = Field(default=1, gt=0, description="Examples per device per micro-step.")
    gradient_accumulation_steps: int = Field(default=16, gt=0, description="Micro-steps per optimizer step.")
    max_length: int | None = Field(
        default=4096,
        gt=0,
        description="Tokens of prompt (image tokens included) + completion; longer examples are cut at the end.",
    )
    completion_only_loss: bool = Field(default=True, description="Supervise only the response, not the prompt.")


def trl_args(cfg: SFTConfig, output_dir: Path) -> Any:
    """The TRL `SFTConfig` for ``cfg`` (the ``trl_args`` passthrough applied last)."""
    from trl import SFTConfig as TRLSFTConfig

    values = common_trl_values(cfg, output_dir)
    values.update(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        completion_only_loss=cfg.completion_only_loss,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
    )
    return trl_config(TRLSFTConfig, values, cfg.trl_args)


def build_trainer(cfg: SFTConfig, model_dir: Path, checkpoint_root: Path, callbacks: list[Any]) -> Prepared:
    """An `SFTTrainer` for ``cfg`` on the model at ``model_dir``, checkpointing under ``checkpoint_root``."""
    from thinkflow.train.trainers import ThinkFlowSFTTrainer

    args = trl_args(cfg, checkpoint_root)  # before the model: DeepSpeed ZeRO-3 must see its config first
    processor = load_processor(model_dir, cfg, padding_side="right")
    model = load_model(model_dir, cfg)
    dataset = load_dataset_split(cfg, SFT_COLUMNS, need="completion")
    trainer = ThinkFlowSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config(cfg),
        callbacks=callbacks,
    )
    return Prepared(trainer=trainer, processor=processor, num_examples=len(dataset), merge_lora=cfg.lora.merge)


def run(cfg: SFTConfig) -> StageResult:
    """Fine-tune ``cfg.model`` on the ``sft`` split of ``cfg.data``; the result's output is the model dir."""
    return run_stage(STAGE, cfg, build_trainer)  # type: ignore[arg-type]
