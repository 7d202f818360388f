"""A tiny random Qwen2.5-VL (or Qwen2-VL) built offline from a config alone.

Everything a real checkpoint has, at toy size: a byte-level BPE tokenizer trained here with the Qwen
special tokens plus ``<think>``/``</think>``/``<answer>``/``</answer>``, the Qwen chat template, a PIL image
processor with small min/max pixels, and an image-only processor (no torchvision). Saved with
``save_pretrained`` so ``AutoProcessor`` / ``AutoModelForImageTextToText`` load it back (after ``import
thinkflow``). Used by tests, demos and the local pipeline; nothing is downloaded.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2VLConfig
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from thinkflow.models.processor import ImageQwen2_5_VLProcessor, ImageQwen2VLProcessor

Family = Literal["qwen2.5-vl", "qwen2-vl"]
FAMILIES: tuple[str, ...] = ("qwen2.5-vl", "qwen2-vl")

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
REASONING_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# The Qwen2-VL / Qwen2.5-VL chat template, as shipped with the official checkpoints.
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Small images: 4..64 patches of 14x14 (1..16 vision tokens after the 2x2 merge).
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16 * 28 * 28


def _corpus(seed: int, n: int = 3000) -> list[str]:
    """Training text for the tokenizer: words, numbers, LaTeX and the reasoning format."""
    rng = random.Random(seed)
    words = [
        "the",
        "a",
        "an",
        "image",
        "shows",
        "shape",
        "circle",
        "square",
        "triangle",
        "red",
        "green",
        "blue",
        "yellow",
        "large",
        "small",
        "how",
        "many",
        "which",
        "answer",
        "think",
        "wait",
        "check",
        "again",
        "area",
        "side",
        "length",
        "total",
        "count",
        "option",
        "question",
        "there",
        "are",
        "is",
        "of",
        "in",
        "on",
        "left",
        "right",
        "top",
        "bottom",
        "box",
        "located",
        "describe",
        "scene",
        "color",
        "biggest",
        "smallest",
    ]
    latex = [r"\frac{1}{2}", r"\sqrt{3}", r"x^2", r"60^\circ", r"\pi", r"3\sqrt{2}", "(A)", "(B)", "(C)", "(D)"]
    lines = []
    for _ in range(n):
        parts = [rng.choice(words) for _ in range(rng.randint(3, 12))]
        parts.append(str(rng.randint(0, 999)))
        parts.append(rng.choice(latex))
        parts.append("".join(rng.choice(string.ascii_letters + string.digits + ".,;:()[]") for _ in range(6)))
        lines.append(" ".join(parts))
    return lines


def build_tokenizer(seed: int = 0, vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer offline with the Qwen special and reasoning tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
        model_max_length=32768,
        padding_side="left",
    )
    fast.add_tokens(REASONING_TOKENS)
    fast.chat_template = QWEN_VL_CHAT_TEMPLATE
    return fast


def _config(family: Family, tokenizer: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig | Qwen2VLConfig:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    common: dict[str, Any] = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    if family == "qwen2.5-vl":
        vision: dict[str, Any] = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        )
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
    vision = dict(
        depth=2,
        embed_dim=32,
        hidden_size=64,
        mlp_ratio=2,
        num_heads=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    return Qwen2VLConfig(text_config=text, vision_config=vision, **common)


def build_tiny(out_dir: str | Path, family: Family = "qwen2.5-vl", seed: int = 0) -> Path:
    """Build and save a tiny random VLM (model, processor, generation config) to ``out_dir``."""
    from transformers import AutoModelForImageTextToText, GenerationConfig

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed)
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    proc_cls = ImageQwen2_5_VLProcessor if family == "qwen2.5-vl" else ImageQwen2VLProcessor
    processor = proc_cls(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_VL_CHAT_TEMPLATE)
    config = _config(family, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    text = config.get_text_config()
    model.generation_config = GenerationConfig(
        eos_token_id=text.eos_token_id, pad_token_id=text.pad_token_id, bos_token_id=text.bos_token_id
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
