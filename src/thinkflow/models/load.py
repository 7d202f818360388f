"""Load a model and its processor from a local directory or an ``s3://`` URI (tiny or real).

The loader every stage uses: evaluation and serving call `load` (inference: on a device, in eval mode),
training calls `resolve`, `load_processor` and `load_model` (weights as trained, vision tower frozen on
request). `resolve` is the one check that a location is a model folder (weights config, processor and
tokenizer files), done on files before anything is loaded.

Loading is where ThinkFlow's image-only Qwen2-VL / Qwen2.5-VL processors get registered with
``AutoProcessor`` (`thinkflow.models.processor`), so ``import thinkflow`` stays free of transformers and torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from thinkflow import storage
from thinkflow.errors import ThinkFlowError

DTYPES = ("auto", "float32", "bfloat16", "float16")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Where image-text-to-text models keep their vision encoder (Qwen2-VL / Qwen2.5-VL: ``model.visual``).
VISION_TOWER_PATHS = ("model.visual", "visual", "model.vision_tower", "vision_tower", "model.vision_model")


class ModelDirError(ThinkFlowError, FileNotFoundError):
    """A model location that is not a loadable model folder; the message names it and what is missing."""


def resolve(model_uri: str | os.PathLike[str], *, need_processor: bool = False) -> Path:
    """A local directory for ``model_uri``: a local path as is, ``s3://`` downloaded once to the cache.

    Checks that it is a model folder (``config.json``) and, with ``need_processor``, that it holds a
    processor and a tokenizer (`processor_problem`); raises `ModelDirError` naming ``model_uri`` otherwise.
    """
    try:
        path = storage.localize(model_uri)
    except storage.StorageError as exc:
        raise ModelDirError(f"model {model_uri}: {exc}") from None
    if not (path / "config.json").is_file():
        raise ModelDirError(f"model {model_uri}: not a model directory (no config.json in {path})")
    problem = processor_problem(path) if need_processor else None
    if problem:
        raise ModelDirError(f"model {model_uri}: {problem}")
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


def vlm_processor_problem(processor: Any) -> str | None:
    """Why ``processor`` cannot prompt a vision-language chat model (no image processor, tokenizer or chat
    template), or None."""
    if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
        return "its processor has no image processor; is it a vision-language model?"
    if processor.tokenizer.chat_template is None and getattr(processor, "chat_template", None) is None:
        return "the processor has no chat template"
    return None


def torch_dtype(dtype: Any) -> Any:
    """``auto`` | ``float32`` | ``bfloat16`` | ``float16`` (or a ``torch.dtype``) as ``from_pretrained`` takes it."""
    if not isinstance(dtype, str):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    import torch

    return dtype if dtype == "auto" else getattr(torch, dtype)


def load_model(
    model_dir: str | os.PathLike[str], *, dtype: Any = "auto", freeze_vision_tower: bool = False, **model_kwargs: Any
) -> Any:
    """``AutoModelForImageTextToText.from_pretrained(model_dir)`` in ``dtype`` (see `torch_dtype`), where it was
    loaded (CPU) and in train mode; ``freeze_vision_tower`` stops gradients into the vision encoder (a
    ``ValueError`` when the model has none)."""
    from transformers import AutoModelForImageTextToText

    model: Any = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch_dtype(dtype), **model_kwargs)
    if freeze_vision_tower:
        tower = vision_tower(model)
        if tower is None:
            raise ValueError(f"no vision tower found in {type(model).__name__}")
        tower.requires_grad_(False)
    return model


def vision_tower(model: Any) -> Any:
    """The vision encoder module of an image-text-to-text model (Qwen-VL's ``visual``), or None."""
    import torch

    for path in VISION_TOWER_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.Module):
            return obj
    return None


def load(
    model_uri: str | os.PathLike[str],
    *,
    dtype: Any = None,
    device: str | None = None,
    **model_kwargs: Any,
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` for inference: on ``device``, in eval mode.

    ``dtype``: ``auto`` | ``float32`` | ``bfloat16`` | ``float16`` or a ``torch.dtype`` (default: bfloat16 on
    GPU, float32 on CPU). ``device``: ``cpu`` / ``cuda`` / ``cuda:N`` (default: cuda when available).
    """
    import torch

    path = resolve(model_uri, need_processor=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    dtype = torch_dtype(dtype)
    processor = load_processor(path)
    problem = vlm_processor_problem(processor)
    if problem:
        raise ValueError(f"model {model_uri}: {problem}")
    model = load_model(path, dtype=dtype, **model_kwargs)
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
