"""Image-only Qwen2-VL / Qwen2.5-VL processors, usable without torchvision.

transformers 5 builds Qwen2(.5)-VL processors with a video processor that needs torchvision. ThinkFlow
trains and evaluates on images only, so these subclasses drop the video processor and keep everything
else (image tokens, chat template, PIL image processor). They are registered with ``AutoProcessor``
when this module is imported (lazily: by `thinkflow.models.load`, `thinkflow.models.tiny` and every stage
that loads a model; ``import thinkflow`` alone does not import transformers), so afterwards
``AutoProcessor.from_pretrained(dir)`` on a checkpoint saved by ThinkFlow returns a full VLM processor,
not only the tokenizer.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2VLConfig
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin


def _init_image_only(self: Any, image_processor: Any, tokenizer: Any, chat_template: Any) -> None:
    self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
    self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
        self.image_token
    )
    self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
        self.video_token
    )
    ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


class ImageQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor with an image processor and a tokenizer, no video processor."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
        _init_image_only(self, image_processor, tokenizer, chat_template)


class ImageQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor with an image processor and a tokenizer, no video processor."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
        _init_image_only(self, image_processor, tokenizer, chat_template)


_registered = False


def register_processors() -> None:
    """Make ``AutoProcessor`` resolve ThinkFlow's image-only processor classes by name."""
    global _registered
    if _registered:
        return
    AutoProcessor.register(Qwen2_5_VLConfig, ImageQwen2_5_VLProcessor, exist_ok=True)
    AutoProcessor.register(Qwen2VLConfig, ImageQwen2VLProcessor, exist_ok=True)
    _registered = True


register_processors()  # importing the classes makes AutoProcessor resolve them
