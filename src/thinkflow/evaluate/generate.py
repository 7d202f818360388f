"""Answer generation with the paper's evaluation settings (system prompt, greedy, 800 new tokens by default).

Prompts are built by `thinkflow.format.build_messages`, the function that builds the training prompts.

Two backends behind one call, `generate_answers`: vLLM when it is importable (and a GPU is there), batched
HF ``generate`` otherwise. vLLM is imported lazily, only when it is used. Both show a progress bar.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from PIL import Image
from tqdm.auto import tqdm

from thinkflow.format import SYSTEM_PROMPT, build_messages

Backend = Literal["auto", "hf", "vllm"]


def prompt_text(processor: Any, question: str, system_prompt: str = SYSTEM_PROMPT) -> str:
    """The chat-templated prompt (with the generation prompt) for one question."""
    text = processor.apply_chat_template(
        build_messages(question, system_prompt), add_generation_prompt=True, tokenize=False
    )
    return text if isinstance(text, str) else str(text[0])


@torch.inference_mode()
def generate(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image],
    questions: Sequence[str],
    *,
    max_new_tokens: int = 800,
    system_prompt: str = SYSTEM_PROMPT,
    do_sample: bool = False,
    temperature: float = 1.0,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "generate",
    on_batch: Callable[[int, list[str]], None] | None = None,
) -> list[str]:
    """Answer each (image, question) pair with HF ``generate``; greedy by default. Returns the completions.

    ``on_batch(start, completions)`` is called after every batch (e.g. to write them out as they come)."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    with tqdm(total=len(questions), desc=desc, unit="sample", disable=not progress) as bar:
        for start in range(0, len(questions), batch_size):
            qs = questions[start : start + batch_size]
            ims = [im.convert("RGB") for im in images[start : start + batch_size]]
            texts = [prompt_text(processor, q, system_prompt) for q in qs]
            inputs = processor(text=texts, images=ims, return_tensors="pt", padding=True).to(model.device)
            gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
            if do_sample:
                gen_kwargs["temperature"] = temperature
            out = model.generate(**inputs, **gen_kwargs, pad_token_id=tokenizer.pad_token_id)
            completions = out[:, inputs["input_ids"].shape[1] :]
            decoded = processor.batch_decode(completions, skip_special_tokens=True)
            outputs.extend(decoded)
            if on_batch is not None:
                on_batch(start, list(decoded))
            bar.update(len(qs))
    return outputs


def vllm_available() -> bool:
    """True when vLLM can be imported and a CUDA device is visible (vLLM needs one)."""
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def vllm_inputs(
    processor: Any, images: Sequence[Image.Image], questions: Sequence[str], system_prompt: str = SYSTEM_PROMPT
) -> list[dict[str, Any]]:
    """vLLM prompts: the chat-templated text plus the image as multi-modal data."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    return [
        {"prompt": prompt_text(processor, q, system_prompt), "multi_modal_data": {"image": im.convert("RGB")}}
        for im, q in zip(images, questions, strict=True)
    ]


def generate_vllm(
    model_dir: str | os.PathLike[str],
    processor: Any,
    images: Sequence[Image.Image],
    questions: Sequence[str],
    *,
    max_new_tokens: int = 800,
    system_prompt: str = SYSTEM_PROMPT,
    temperature: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    **llm_kwargs: Any,
) -> list[str]:
    """Answer each pair with vLLM (offline ``LLM.generate``); greedy when ``temperature`` is 0."""
    from vllm import LLM, SamplingParams  # lazy: optional, GPU-only

    llm = LLM(model=str(model_dir), limit_mm_per_prompt={"image": 1}, seed=seed, **llm_kwargs)
    params = SamplingParams(temperature=temperature, max_tokens=max_new_tokens, seed=seed)
    results = llm.generate(vllm_inputs(processor, images, questions, system_prompt), params, use_tqdm=progress)
    return [r.outputs[0].text for r in results]


def resolve_backend(backend: Backend) -> Literal["hf", "vllm"]:
    """``auto`` -> ``vllm`` when importable with a GPU, else ``hf``; an explicit ``vllm`` must be usable."""
    if backend == "auto":
        return "vllm" if vllm_available() else "hf"
    if backend == "vllm" and not vllm_available():
        raise RuntimeError("backend 'vllm' requested but vllm is not installed or no CUDA device is visible")
    if backend not in ("hf", "vllm"):
        raise ValueError(f"unknown backend {backend!r}; choose auto, hf or vllm")
    return backend


def generate_answers(
    model_uri: str,
    images: Sequence[Image.Image],
    questions: Sequence[str],
    *,
    backend: Backend = "auto",
    max_new_tokens: int = 800,
    system_prompt: str = SYSTEM_PROMPT,
    temperature: float = 0.0,
    batch_size: int = 8,
    dtype: str | None = None,
    device: str | None = None,
    seed: int = 0,
    progress: bool = True,
    vllm_args: dict[str, Any] | None = None,
    max_pixels: int | None = None,
    min_pixels: int | None = None,
    on_batch: Callable[[int, list[str], list[int]], None] | None = None,
) -> tuple[list[str], list[int], str]:
    """Load ``model_uri`` and answer every pair: ``(completions, completion token counts, backend used)``.

    ``max_pixels`` / ``min_pixels`` bound each image's resolution (the processor's for HF generation; vLLM's
    ``mm_processor_kwargs``); ``None`` keeps the model processor's own bounds. ``on_batch(start, completions,
    token counts)`` receives the answers as they are generated (per batch with HF, all at once with vLLM), so a
    caller can keep them when a later step fails.
    """
    from thinkflow.models.load import load, load_processor, resolve, set_pixel_bounds

    pixels = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}

    used = resolve_backend(backend)
    torch.manual_seed(seed)
    if used == "vllm":
        extra = dict(vllm_args or {})
        if dtype:
            extra.setdefault("dtype", dtype)
        if pixels:
            extra["mm_processor_kwargs"] = {**pixels, **extra.get("mm_processor_kwargs", {})}
        model_dir = resolve(model_uri)
        processor = load_processor(model_dir)
        set_pixel_bounds(processor, **pixels)
        texts = generate_vllm(
            model_dir,
            processor,
            images,
            questions,
            max_new_tokens=max_new_tokens,
            system_prompt=system_prompt,
            temperature=temperature,
            seed=seed,
            progress=progress,
            **extra,
        )
        if on_batch is not None:
            on_batch(0, list(texts), _token_counts(processor, texts))
    else:
        model, processor = load(model_uri, dtype=dtype, device=device)
        set_pixel_bounds(processor, **pixels)

        def batch_done(start: int, batch: list[str]) -> None:
            if on_batch is not None:
                on_batch(start, batch, _token_counts(processor, batch))

        texts = generate(
            model,
            processor,
            images,
            questions,
            max_new_tokens=max_new_tokens,
            system_prompt=system_prompt,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else 1.0,
            batch_size=batch_size,
            progress=progress,
            on_batch=batch_done,
        )
    return texts, _token_counts(processor, texts), used


def _token_counts(processor: Any, texts: Sequence[str]) -> list[int]:
    return [len(processor.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
