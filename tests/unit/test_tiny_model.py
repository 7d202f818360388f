"""The tiny offline VLM loads back through the Auto classes exactly as a real Qwen2.5-VL checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

import thinkflow.models.processor  # noqa: F401 - registers the image-only processors
from thinkflow.evaluate.generate import generate
from thinkflow.models.load import load
from thinkflow.models.tiny import REASONING_TOKENS, build_tiny


def _image() -> Image.Image:
    img = Image.new("RGB", (96, 80), "white")
    img.paste((255, 0, 0), (10, 10, 40, 40))
    return img


def test_auto_classes_load_a_vlm(tiny_model: Path) -> None:
    proc = AutoProcessor.from_pretrained(tiny_model)
    assert hasattr(proc, "image_processor") and hasattr(proc, "tokenizer")
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    tok = proc.tokenizer
    for t in REASONING_TOKENS:
        ids = tok(t, add_special_tokens=False).input_ids
        assert len(ids) == 1, t
    text = "<think>two shapes</think><answer>2</answer>"
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_image_tokens_reach_the_model(tiny_model: Path) -> None:
    model, proc = load(tiny_model)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    with_image = proc(text=[text], images=[_image()], return_tensors="pt")
    n_image_tokens = int((with_image["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens > 0
    assert with_image["pixel_values"].shape[0] == int(with_image["image_grid_thw"].prod())
    answers = generate(model, proc, [_image(), _image()], ["How many?", "Which is red?"], max_new_tokens=5)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_generation_is_deterministic_by_seed(tmp_path: Path) -> None:
    a = build_tiny(tmp_path / "a", seed=1)
    b = build_tiny(tmp_path / "b", seed=1)
    ma, pa = load(a)
    mb, pb = load(b)
    out_a = generate(ma, pa, [_image()], ["Q?"], max_new_tokens=6)
    out_b = generate(mb, pb, [_image()], ["Q?"], max_new_tokens=6)
    assert out_a == out_b


def test_qwen2_vl_family(tmp_path: Path) -> None:
    path = build_tiny(tmp_path / "q2", family="qwen2-vl")
    model, proc = load(path)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert generate(model, proc, [_image()], ["Q?"], max_new_tokens=3)


def test_unknown_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny(tmp_path, family="llava")  # type: ignore[arg-type]


def test_load_rejects_non_model_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load(tmp_path)


def test_load_from_s3(tiny_model: Path, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from thinkflow import storage

    monkeypatch.setenv("THINKFLOW_CACHE", str(tmp_path / "cache"))
    storage.upload(tiny_model, "s3://models/tiny")
    model, proc = load("s3://models/tiny")
    assert hasattr(proc, "image_processor")
    assert generate(model, proc, [_image()], ["Q?"], max_new_tokens=2)
