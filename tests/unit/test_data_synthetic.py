"""Synthetic scenes: deterministic, balanced, answers that match what is drawn."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from PIL import Image

from thinkflow.data.scenes import COLOURS, SIZES, VERIFIER_ORDER, assign_splits, iter_scenes, make_scene
from thinkflow.format import has_aha


def test_deterministic_by_seed_and_independent_of_n() -> None:
    a = [s.png() for s in iter_scenes(10, seed=3)]
    b = [s.png() for s in iter_scenes(12, seed=3)][:10]
    assert a == b
    assert make_scene(4, seed=3).question == make_scene(4, seed=3).question
    assert [s.png() for s in iter_scenes(5, seed=4)] != a[:5]


def test_balanced_types_and_small_images() -> None:
    scenes = list(iter_scenes(50, seed=1))
    assert Counter(s.verifier_type for s in scenes) == {t: 10 for t in VERIFIER_ORDER}
    for s in scenes:
        assert s.width in SIZES and s.height in SIZES
        assert s.render().size == (s.width, s.height)


def _pixel(scene, x: float, y: float) -> tuple[int, int, int]:
    im = scene.render()
    return im.getpixel((int(x), int(y)))


@pytest.mark.parametrize("index", range(0, 40))
def test_answers_match_the_drawing(index: int) -> None:
    s = make_scene(index, seed=7)
    if s.verifier_type == "digit":
        if "in total" in s.question:
            assert int(s.solution) == len(s.shapes)
        else:
            kind_colour = s.question.removeprefix("How many ").removesuffix("s are there in the image?")
            assert int(s.solution) == sum(1 for sh in s.shapes if sh.name() == kind_colour)
        for sh in s.shapes:  # every counted shape is visibly drawn in its colour at its centre
            assert _pixel(s, sh.cx, sh.cy + sh.r / 2) == COLOURS[sh.colour]
    elif s.verifier_type == "mcq":
        options = dict(line[1:].split(") ", 1) for line in s.question.splitlines()[1:])
        largest = max(s.shapes, key=lambda sh: sh.r)
        assert options[s.solution] in (largest.name(), largest.colour)
        assert sorted(options) == ["A", "B", "C", "D"]
    elif s.verifier_type == "math":
        a, b = s.figure["a"], s.figure["b"]
        expected = a * b / 2 if s.figure["kind"] == "triangle" else (a * b if "area" in s.question else 2 * (a + b))
        assert float(s.solution) == expected
    elif s.verifier_type == "iou":
        box = json.loads(s.solution)
        assert len(box) == 4 and 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1
        cx, cy = (box[0] + box[2]) / 2 * s.width, (box[1] + box[3]) / 2 * s.height
        target = s.shapes[0]
        assert _pixel(s, cx, cy + target.r / 2) == COLOURS[target.colour]
    else:
        assert s.solution.startswith("The image shows")
        for sh in s.shapes:
            assert sh.name() in s.solution


def test_splits_balanced_and_aha_only_in_rl() -> None:
    splits = assign_splits(100, seed=0, eval_fraction=0.1)
    assert Counter(splits) == {"eval": 10, "sft": 45, "rl": 45}
    per_type = Counter((VERIFIER_ORDER[i % 5], sp) for i, sp in enumerate(splits))
    assert all(per_type[(t, "eval")] == 2 for t in VERIFIER_ORDER)
    for scene in iter_scenes(20, seed=2):
        reflective, plain = scene.response(True), scene.response(False)
        assert has_aha(reflective) and not has_aha(plain)  # the build's rule: the whole response
        assert plain.startswith("<think>") and plain.endswith(f"<answer>{scene.solution}</answer>")


def test_reference_responses_score_full_reward() -> None:
    score = pytest.importorskip("thinkflow.rewards").score
    for scene in iter_scenes(20, seed=5):
        if scene.verifier_type == "open":
            continue
        assert score(scene.response(False), scene.solution, scene.verifier_type) == pytest.approx(1.0)


def test_png_decodes() -> None:
    import io

    with Image.open(io.BytesIO(make_scene(2).png())) as im:
        assert im.format == "PNG" and im.mode == "RGB"
