"""Qwen2-VL / Qwen2.5-VL with a scalar (sequence-classification) head: a VLM reward model.

transformers 5 ships ``ForSequenceClassification`` classes for some VLMs (e.g. Gemma 3, Qwen3.5: built on
its `GenericForSequenceClassification` mixin, ``transformers/models/qwen3_5/modeling_qwen3_5.py``) but not
for Qwen2-VL/Qwen2.5-VL. `register` adds them the same way (the mixin: the base model from
``AutoModel.from_config``, a bias-free ``score`` linear layer, the logit at the last non-padding token) and
registers them with ``AutoModelForSequenceClassification``, so a Qwen2.5-VL reward model trained with
them (e.g. by TRL's reward trainer) loads with ``AutoModelForSequenceClassification.from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForSequenceClassification, Qwen2_5_VLConfig, Qwen2VLConfig
from transformers.modeling_layers import GenericForSequenceClassification
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLPreTrainedModel
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLPreTrainedModel


class Qwen2_5_VLForSequenceClassification(GenericForSequenceClassification, Qwen2_5_VLPreTrainedModel):
    """Qwen2.5-VL with a scalar head (``num_labels=1``: a reward model)."""


class Qwen2VLForSequenceClassification(GenericForSequenceClassification, Qwen2VLPreTrainedModel):
    """Qwen2-VL with a scalar head."""


def register() -> None:
    """Make ``AutoModelForSequenceClassification`` resolve Qwen2-VL/Qwen2.5-VL configs to the classes above."""
    AutoModelForSequenceClassification.register(Qwen2_5_VLConfig, Qwen2_5_VLForSequenceClassification, exist_ok=True)
    AutoModelForSequenceClassification.register(Qwen2VLConfig, Qwen2VLForSequenceClassification, exist_ok=True)


def build_tiny_reward_model(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random Qwen2.5-VL reward model (scalar head) with its processor, built offline (tests, demos)."""
    import torch
    from transformers import AutoConfig, AutoProcessor

    from thinkflow.models.processor import register_processors
    from thinkflow.models.tiny import build_tiny

    out = Path(out_dir)
    base = build_tiny(out / ".base", family="qwen2.5-vl", seed=seed)
    register_processors()
    config = AutoConfig.from_pretrained(base, num_labels=1)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForSequenceClassification(config)
    model.save_pretrained(out)
    AutoProcessor.from_pretrained(base).save_pretrained(out)
    import shutil

    shutil.rmtree(base)
    return out
