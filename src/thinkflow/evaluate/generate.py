"""Batched answer generation with HF ``generate`` (the paper's evaluation settings by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from thinkflow.records import SYSTEM_PROMPT


def build_messages(question: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """The conversation for one image question: the system prompt, then the image and the question."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
    return messages


@torch.inference_mode()
def generate(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image],
    questions: Sequence[str],
    *,
    max_new_tokens: int = 800,
    system_prompt: str | None = SYSTEM_PROMPT,
    do_sample: bool = False,
    temperature: float = 1.0,
    batch_size: int = 8,
) -> list[str]:
    """Answer each (image, question) pair; greedy by default. Returns the decoded completions."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    for start in range(0, len(questions), batch_size):
        qs = questions[start : start + batch_size]
        ims = [im.convert("RGB") for im in images[start : start + batch_size]]
        texts = [
            processor.apply_chat_template(build_messages(q, system_prompt), add_generation_prompt=True) for q in qs
        ]
        inputs = processor(text=texts, images=ims, return_tensors="pt", padding=True).to(model.device)
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
        if do_sample:
            gen_kwargs["temperature"] = temperature
        out = model.generate(**inputs, **gen_kwargs, pad_token_id=tokenizer.pad_token_id)
        completions = out[:, inputs["input_ids"].shape[1] :]
        outputs.extend(processor.batch_decode(completions, skip_special_tokens=True))
    return outputs
