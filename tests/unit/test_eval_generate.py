"""Generation: batched HF generate with a progress bar, vLLM inputs, backend selection."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from thinkflow.evaluate.generate import generate, generate_answers, resolve_backend, vllm_available, vllm_inputs
from thinkflow.records import SYSTEM_PROMPT


def test_generate_answers_hf_with_token_counts(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = [Image.new("RGB", (56, 56), c) for c in ("red", "blue", "green")]
    questions = ["Colour?", "How many circles are there?", "Which shape?"]
    texts, lengths, backend = generate_answers(
        str(tiny_model), images, questions, backend="hf", max_new_tokens=6, batch_size=2, progress=True
    )
    assert backend == "hf" and len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert all(0 < n <= 6 for n in lengths)
    assert "3/3" in capsys.readouterr().err  # the progress bar counted every sample
    # greedy and batched: the same answers one by one
    again, _, _ = generate_answers(
        str(tiny_model), images[:1], questions[:1], backend="hf", max_new_tokens=6, progress=False
    )
    assert again[0] == texts[0]


def test_generate_rejects_mismatched_inputs(tiny_model: Path) -> None:
    from thinkflow.models.load import load

    model, processor = load(tiny_model)
    with pytest.raises(ValueError, match="2 images but 1 questions"):
        generate(model, processor, [Image.new("RGB", (8, 8))] * 2, ["q"])


def test_vllm_inputs_carry_the_templated_prompt_and_image(tiny_model: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    im = Image.new("L", (56, 56), 128)
    (item,) = vllm_inputs(processor, [im], ["How many?"])
    assert SYSTEM_PROMPT in item["prompt"] and "How many?" in item["prompt"]
    assert "<|image_pad|>" in item["prompt"] and item["prompt"].endswith("<|im_start|>assistant\n")
    assert item["multi_modal_data"]["image"].mode == "RGB"


def test_backend_selection() -> None:
    assert resolve_backend("hf") == "hf"
    assert resolve_backend("auto") == ("vllm" if vllm_available() else "hf")
    if not vllm_available():
        with pytest.raises(RuntimeError, match="vllm is not installed or no CUDA device"):
            resolve_backend("vllm")


def test_max_pixels_bounds_the_image_tokens(tiny_model: Path) -> None:
    from transformers import AutoProcessor

    from thinkflow.format import build_messages
    from thinkflow.models.load import set_pixel_bounds

    processor = AutoProcessor.from_pretrained(tiny_model)
    text = processor.apply_chat_template(build_messages("Q?"), add_generation_prompt=True, tokenize=False)
    image = Image.new("RGB", (1024, 1024))

    def patches(max_pixels: int) -> int:
        set_pixel_bounds(processor, max_pixels=max_pixels)
        return int(processor(text=[text], images=[image], return_tensors="pt")["image_grid_thw"].prod().item())

    small, paper = patches(28 * 28 * 16), patches(256 * 32 * 32)
    assert small * 14 * 14 <= 28 * 28 * 16 < paper * 14 * 14 <= 256 * 32 * 32  # 14x14-pixel patches within bounds
    with pytest.raises(ValueError, match="max_pixels: NoneType has no pixel bounds"):
        set_pixel_bounds(object(), max_pixels=1)
