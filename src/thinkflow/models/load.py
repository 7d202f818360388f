"""Load a model and its processor from a local directory or an ``s3://`` URI (tiny or real).

Loading is where ThinkFlow's image-only Qwen2-VL / Qwen2.5-VL processors get registered with
``AutoProcessor`` (`thinkflow.models.processor`), so ``import thinkflow`` stays free of transformers and torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thinkflow import storage

DTYPES = ("auto", "float32", "bfloat16", "float16")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def resolve(model_uri: str | os.PathLike[str]) -> Path:
    """A local directory for ``model_uri``: a local path as is, ``s3://`` downloaded once to the cache."""
    path = storage.localize(model_uri)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{model_uri}: not a model directory (no config.json in {path})")
    return path


def processor_problem(path: Path) -> str | None:
    """Why the model folder ``path`` has no loadable processor (checked on files, nothing loaded), or None."""
    if not any((path / name).is_file() for name in PROCESSOR_FILES):
        return (
            f"no processor in {path} (expected {' or '.join(PROCESSOR_FILES)}); "
            "save it beside the weights with processor.save_pretrained(folder)"
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        return f"no tokenizer in {path} (expected {' or '.join(TOKENIZER_FILES)}); save the processor with the model"
    return None


def load_processor(model_dir: str | os.PathLike[str]) -> Any:
    """``AutoProcessor.from_pretrained(model_dir)`` with ThinkFlow's image-only processors registered first."""
    from transformers import AutoProcessor

    from thinkflow.models.processor import register_processors

    register_processors()
    return AutoProcessor.from_pretrained(model_dir)


def load(
    model_uri: str | os.PathLike[str],
    *,
    dtype: Any = None,
    device: str | None = None,
    **model_kwargs: Any,
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` with ``AutoModelForImageTextToText`` / ``AutoProcessor``.

    ``dtype``: ``auto`` | ``float32`` | ``bfloat16`` | ``float16`` or a ``torch.dtype`` (default: bfloat16 on
    GPU, float32 on CPU). ``device``: ``cpu`` / ``cuda`` / ``cuda:N`` (default: cuda when available).
    """
    import torch
    from transformers import AutoModelForImageTextToText

    path = resolve(model_uri)
    problem = processor_problem(path)
    if problem:
        raise FileNotFoundError(f"{model_uri}: {problem}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    processor = load_processor(path)
    if not hasattr(processor, "image_processor"):
        raise ValueError(f"{model_uri}: the processor has no image processor; is this a vision-language model?")
    model: Any = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, **model_kwargs)
    model.to(device).eval()
    return model, processor


def set_pixel_bounds(processor: Any, *, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Bound the image resolution of a Qwen2(.5)-VL processor (pixels per image); ``None`` keeps its own bound.

    Sets the image processor's ``size`` entries ``shortest_edge`` / ``longest_edge`` (what transformers 5's
    Qwen2-VL image processor reads), or its ``min_pixels`` / ``max_pixels`` attributes when it has no ``size``.
    Raises ``ValueError`` naming the key when the processor has no such bounds.
    """
    image_processor = getattr(processor, "image_processor", None)
    for key, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if value is None:
            continue
        if image_processor is None or (not hasattr(image_processor, key) and not hasattr(image_processor, "size")):
            raise ValueError(f"{key}: {type(image_processor).__name__} has no pixel bounds to set")
        if getattr(image_processor, "size", None) is not None:  # transformers 5 reads only `size`
            size = dict(image_processor.size)
            size["shortest_edge" if key == "min_pixels" else "longest_edge"] = value
            image_processor.size = size
            if getattr(image_processor, key, None) is not None:  # a stale attribute would win over `size`
                setattr(image_processor, key, None)
        else:
            setattr(image_processor, key, value)
