"""Checkpoints in the workspace and resuming from the newest complete one.

Checkpoints are the HF Trainer's ``checkpoint-<global_step>`` folders under the run's checkpoint
directory (a PVC on the cluster). A checkpoint is *complete* when its ``trainer_state.json`` parses and
records the step in its folder name: the Trainer writes that file last, after the weights, optimizer,
scheduler and RNG states, so a pod killed mid-save leaves a folder without it (or with a truncated one).

Started again with the same output, a run resumes from the newest complete checkpoint — the optimizer,
scheduler, RNG and ``global_step`` continue — and says so in its log (``resuming from …``). Incomplete
folders newer than that checkpoint are removed first, so the resumed run can write those steps again.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("thinkflow.train")

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint-N`` folder under ``root``, newest (highest step) first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found, key=lambda item: item[0], reverse=True)


def checkpoint_step(path: str | Path) -> int | None:
    """The ``global_step`` recorded in a checkpoint's ``trainer_state.json`` (None when absent or unreadable)."""
    state_file = Path(path) / TRAINER_STATE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) else None


def is_complete(path: str | Path) -> bool:
    """True when the checkpoint folder was fully written (see the module docstring)."""
    path = Path(path)
    match = CHECKPOINT_RE.match(path.name)
    if not match or not path.is_dir():
        return False
    return checkpoint_step(path) == int(match.group(1))


def newest_complete(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root``, or None."""
    for _, path in list_checkpoints(root):
        if is_complete(path):
            return path
    return None


def prepare_resume(root: str | Path, *, remove_incomplete: bool = True) -> Path | None:
    """Pick the checkpoint to resume from and clear incomplete ones newer than it.

    Returns the checkpoint path (and logs ``resuming from <path> (global_step N)``), or None for a fresh
    start. Only the main process should call this with ``remove_incomplete=True``.
    """
    chosen = newest_complete(root)
    chosen_step = -1 if chosen is None else int(CHECKPOINT_RE.match(chosen.name).group(1))  # type: ignore[union-attr]
    for step, path in list_checkpoints(root):
        if step > chosen_step and not is_complete(path):
            if remove_incomplete:
                log.warning("removing incomplete checkpoint %s (interrupted while saving)", path)
                shutil.rmtree(path, ignore_errors=True)
            else:
                log.warning("ignoring incomplete checkpoint %s (interrupted while saving)", path)
    if chosen is not None:
        log.info("resuming from %s (global_step %d)", chosen, chosen_step)
    return chosen


class ResumeWeightsMixin:
    """Restore a checkpoint's weights through ``from_pretrained`` (key conversion included) on resume.

    transformers 5 saves Qwen2(.5)-VL weights in the original checkpoint layout (``visual.*``,
    ``model.layers.*``) but the Trainer's resume path loads them with a plain ``load_state_dict`` into
    the model's own layout (``model.visual.*``, ``model.language_model.*``), so *no* weight is restored and
    training silently continues from the base weights (huggingface/transformers#43701). Mixed into the
    ThinkFlow trainers before the TRL class; DeepSpeed, FSDP and PEFT checkpoints keep their own loaders.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from peft import PeftModel

        trainer: Any = self
        target = model if model is not None else trainer.model
        unwrapped = trainer.accelerator.unwrap_model(target)
        has_weights = any(
            (Path(resume_from_checkpoint) / name).is_file()
            for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        )
        if (
            trainer.is_deepspeed_enabled
            or trainer.is_fsdp_enabled
            or isinstance(unwrapped, PeftModel)
            or not has_weights
        ):
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
            return
        dtype = next(unwrapped.parameters()).dtype
        restored = type(unwrapped).from_pretrained(resume_from_checkpoint, dtype=dtype)
        unwrapped.load_state_dict(restored.state_dict(), strict=True)
        del restored
        log.info("restored the weights of %s", resume_from_checkpoint)
