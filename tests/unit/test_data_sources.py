"""Sources: the VLAA-Thinking import, JSON lines + images, HF datasets on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from thinkflow.data.build import BuildConfig, run
from thinkflow.data.sources import HFSource, JsonlSource, VlaaSource
from thinkflow.data.sources.vlaa import infer_verifier_type, split_from_filename
from thinkflow.records import read_jsonl


def _img(path: Path, colour: str = "red", size: tuple[int, int] = (64, 48), fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


def _rows(out: Path, split: str) -> dict[str, dict[str, Any]]:
    p = out / f"{split}.jsonl"
    return {r["id"]: r for r in read_jsonl(p)} if p.exists() else {}


def _vlaa_tree(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    _img(images / "clevr_math" / "CLEVR_1.png", "red")
    _img(images / "geoqa170k" / "geo_2.png", "green")
    _img(images / "synthesis" / "func_3.png", "blue")
    _img(images / "allava_laion" / "images" / "4.jpeg", "yellow", fmt="JPEG")
    _img(images / "coco" / "train2017" / "5.jpg", "purple", size=(100, 80), fmt="JPEG")
    (images / "vizwiz").mkdir(parents=True)
    (images / "vizwiz" / "broken.jpg").write_bytes(b"not an image at all")
    sft = [
        {
            "id": "clevr_math-CLEVR_1.png",
            "image": "clevr_math/CLEVR_1.png",
            "question": "Subtract all balls. How many objects are left?",
            "gt": 3,
            "ds_answer": "<think>\nFour objects, one ball.\n</think>\n\n**Answer:** There are 3 objects remaining.",
            "caption": "",
            "meta": {"caption_model_id": "gpt-4o", "rationale": "a sphere and three cylinders"},
        },
        {
            "id": "geoqa170k-geo-2",
            "image": "geoqa170k/geo_2.png",
            "question": "Find tan.\nChoices:\nA: 1\nB: 2\nC: 3\nD: 4",
            "gt": "C",
            "ds_answer": "<think>\nso C.\n</think>\n\n**Answer:** \\(\\boxed{3}\\) (Option C)",
            "caption": "",
            "meta": {},
        },
        {
            "id": "synthesis-3",
            "image": "synthesis/func_3.png",
            "question": "What is the function's equation?",
            "gt": "Step 1: solve.\nStep 2: done.\n\n†Answer: y = -5 * sin(-5 * x).",
            "ds_answer": "<think>\na = -5\n</think>\n\n**Final Answer:**\n\\[\n\\boxed{y = -5 \\sin(-5x)}\n\\]",
            "caption": "",
            "meta": {"text_question": "The function y = a sin(-5x) passes (pi/10, 5). What is it?"},
        },
        {
            "id": "allava-allava_laion_4",
            "image": "/allava_laion/images/4.jpeg",
            "question": "What is notable here?",
            "gt": "A yellow field.",
            "ds_answer": "<think>\nIt is yellow.\n</think>\n\nThe image shows a yellow field.",
            "caption": "A yellow square.",
            "meta": {"url": "http://example.invalid/x.jpg"},
        },
        {
            "id": "clevr_math-missing",
            "image": "clevr_math/missing.png",
            "question": "How many?",
            "gt": 1,
            "ds_answer": "<think>one</think> 1",
        },
        {"id": "geoqa170k-no-gt", "image": "geoqa170k/geo_2.png", "question": "Q?"},
    ]
    sft_path = root / "VLAA-Thinking-SFT-126K.json"
    sft_path.write_text(json.dumps(sft))
    grpo = [
        {"id": "coco-5", "image": "coco/train2017/5.jpg", "question": "Where is the cat?", "gt": [0.1, 0.2, 0.5, 0.6]},
        {"id": "vizwiz-broken", "image": "vizwiz/broken.jpg", "question": "What is it?", "gt": "a can"},
        {"id": "coco-bad-box", "image": "coco/train2017/5.jpg", "question": "Where?", "gt": "[0.5, 0.2, 0.1]"},
    ]
    grpo_path = root / "VLAA-Thinking-GRPO-25K.json"
    grpo_path.write_text("\n".join(json.dumps(r) for r in grpo) + "\n")  # JSON lines
    return sft_path, grpo_path


def test_vlaa_import(tmp_path: Path) -> None:
    sft_path, grpo_path = _vlaa_tree(tmp_path)
    out = tmp_path / "out"
    sources = [
        VlaaSource(json_file=str(sft_path), images=str(tmp_path / "images")),
        VlaaSource(json_file=str(grpo_path), images=str(tmp_path / "images")),
    ]
    result = run(
        BuildConfig(output_dir=str(out), sources=sources, dedupe="image_question", tracking=False, progress=False)
    )
    sft, rl = _rows(out, "sft"), _rows(out, "rl")
    assert set(sft) == {"clevr_math-CLEVR_1.png", "geoqa170k-geo-2", "synthesis-3", "allava-allava_laion_4"}
    assert set(rl) == {"coco-5"}
    assert not (out / "eval.jsonl").exists()
    clevr = sft["clevr_math-CLEVR_1.png"]
    assert clevr["solution"] == "3" and clevr["verifier_type"] == "digit" and clevr["source"] == "clevr_math"
    assert clevr["response"].startswith("<think>Four objects, one ball.</think><answer>")
    assert clevr["meta"]["caption_model_id"] == "gpt-4o" and clevr["meta"]["original_image"] == "clevr_math/CLEVR_1.png"
    assert "caption" not in clevr  # empty caption dropped
    geo = sft["geoqa170k-geo-2"]
    assert geo["verifier_type"] == "mcq" and geo["response"].endswith("<answer>C</answer>")
    synth = sft["synthesis-3"]
    assert synth["verifier_type"] == "math" and synth["solution"] == "y = -5 * sin(-5 * x)"
    assert synth["meta"]["gt"].startswith("Step 1") and synth["response"].endswith("<answer>y = -5 \\sin(-5x)</answer>")
    allava = sft["allava-allava_laion_4"]
    assert allava["verifier_type"] == "open" and allava["caption"] == "A yellow square."
    assert allava["image"].endswith(".jpg") and (out / allava["image"]).is_file()
    assert rl["coco-5"]["verifier_type"] == "iou" and json.loads(rl["coco-5"]["solution"]) == [0.1, 0.2, 0.5, 0.6]
    rejected = {r["id"]: r["reason"] for r in read_jsonl(out / "rejected.jsonl")}
    assert "image not found" in rejected["clevr_math-missing"]
    assert "missing field(s) 'gt'" in rejected["geoqa170k-no-gt"]
    assert "not an image" in rejected["vizwiz-broken"]
    assert "field 'solution' (iou)" in rejected["coco-bad-box"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["source"] == {
        "allava_laion": 1,
        "clevr_math": 1,
        "coco": 1,
        "geoqa170k": 1,
        "synthesis": 1,
    }
    assert manifest["counts"]["rejected"] == 4 and result.metrics["records"] == 5


def test_vlaa_split_from_file_name() -> None:
    assert split_from_filename("s3://b/VLAA-Thinking-SFT-126K.json") == "sft"
    assert split_from_filename("train-grpo.json") == "rl"
    assert split_from_filename("data.json") is None
    with pytest.raises(ValueError, match="SFT or the GRPO file"):
        VlaaSource(json_file="data.json", images="x")
    assert VlaaSource(json_file="data.json", images="x", split="rl").split == "rl"


def test_verifier_table_inference_and_override() -> None:
    table = {"clevr_math": "digit", "coco": "iou", "docvqa": "open"}
    assert infer_verifier_type("clevr_math-1", "clevr_math/a.png", table) == ("digit", "clevr_math")
    assert infer_verifier_type("x", "/coco/train2017/1.jpg", table) == ("iou", "coco")
    assert infer_verifier_type("docvqa_v2-1", "a.png", table) == ("open", "docvqa_v2")
    assert infer_verifier_type("mystery-1", "m/a.png", table) == (None, "m")


def test_vlaa_unknown_prefix_rejected_unless_table_extended(tmp_path: Path) -> None:
    _img(tmp_path / "images" / "newsrc" / "a.png")
    f = tmp_path / "x-grpo.json"
    f.write_text(json.dumps([{"id": "newsrc-1", "image": "newsrc/a.png", "question": "Q?", "gt": "7"}]))
    out = tmp_path / "o1"
    run(
        BuildConfig(
            output_dir=str(out),
            sources=[VlaaSource(json_file=str(f), images=str(tmp_path / "images"))],
            tracking=False,
            progress=False,
        )
    )
    assert "add the source prefix to verifier_table" in next(read_jsonl(out / "rejected.jsonl"))["reason"]
    out2 = tmp_path / "o2"
    src = VlaaSource(json_file=str(f), images=str(tmp_path / "images"), verifier_table={"newsrc": "digit"})
    run(BuildConfig(output_dir=str(out2), sources=[src], tracking=False, progress=False))
    assert _rows(out2, "rl")["newsrc-1"]["verifier_type"] == "digit"


def test_jsonl_source_with_field_mapping(tmp_path: Path) -> None:
    _img(tmp_path / "pics" / "a.png", "red")
    _img(tmp_path / "pics" / "b.png", "blue")
    rows = [
        {"uid": 1, "img": "a.png", "q": "How many squares?", "ans": 1, "kind": "digit", "extra": "keep me"},
        {
            "uid": 2,
            "img": "b.png",
            "q": "Colour?",
            "ans": "blue",
            "kind": "open",
            "response": "<think>It is blue.</think>Answer: blue",
        },
        {"uid": 3, "img": "c.png", "q": "Where?", "ans": "x", "kind": "open"},
        {"uid": 4, "img": "a.png", "q": "Again?", "kind": "digit"},
        {"uid": 5, "img": "a.png", "q": "Same picture, other question?", "ans": 2, "kind": "digit"},
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    src = JsonlSource(
        name="mine",
        path=str(data),
        images=str(tmp_path / "pics"),
        fields={"id": "uid", "image": "img", "question": "q", "solution": "ans", "verifier_type": "kind"},
        split="auto",
    )
    out = tmp_path / "out"
    run(BuildConfig(output_dir=str(out), sources=[src], eval_fraction=0.0, tracking=False, progress=False))
    rl, sft = _rows(out, "rl"), _rows(out, "sft")
    assert rl["mine-1"]["solution"] == "1" and rl["mine-1"]["meta"]["extra"] == "keep me"  # no response -> rl
    assert sft["mine-2"]["response"] == "<think>It is blue.</think><answer>blue</answer>"
    rejected = {r["id"]: r["reason"] for r in read_jsonl(out / "rejected.jsonl")}
    assert "image not found" in rejected["mine-3"]
    assert "missing 'solution' (source field 'ans')" in rejected["mine-4"]
    assert rejected["mine-5"] == "duplicate image (same as mine-1)"


def test_hf_sources_arrow_and_parquet(tmp_path: Path) -> None:
    import datasets

    _img(tmp_path / "a.png", "red")
    _img(tmp_path / "b.png", "green")
    ds = datasets.Dataset.from_dict(
        {
            "image": [str(tmp_path / "a.png"), str(tmp_path / "b.png")],
            "question": ["How many?", "Which colour?\n(A) red\n(B) green"],
            "answer": ["1", "B"],
            "type": ["digit", "mcq"],
        }
    ).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    ds.to_parquet(str(tmp_path / "data.parquet"))
    for name, path in (("saved", tmp_path / "saved"), ("pq", tmp_path / "data.parquet")):
        src = HFSource(name=name, path=str(path), fields={"verifier_type": "type"})
        out = tmp_path / f"out-{name}"
        run(BuildConfig(output_dir=str(out), sources=[src], eval_fraction=0.0, tracking=False, progress=False))
        rl = _rows(out, "rl")
        assert {r["solution"] for r in rl.values()} == {"1", "B"}, name
        assert all((out / r["image"]).is_file() for r in rl.values())


def test_hf_imagefolder_with_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    _img(folder / "one.png", "red")
    _img(folder / "two.png", "blue")
    meta = [
        {"file_name": "one.png", "question": "Colour?", "answer": "red"},
        {"file_name": "two.png", "question": "Colour?", "answer": "blue"},
    ]
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    out = tmp_path / "out"
    src = HFSource(name="docvqa", path=str(folder), format="imagefolder")
    run(BuildConfig(output_dir=str(out), sources=[src], eval_fraction=0.0, tracking=False, progress=False))
    rl = _rows(out, "rl")
    assert sorted(r["solution"] for r in rl.values()) == ["blue", "red"]
    assert {r["verifier_type"] for r in rl.values()} == {"open"}  # named like a VLAA source: its type
