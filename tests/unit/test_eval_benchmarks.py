"""Benchmark adapters: the six benchmarks' published field layouts become EvalSamples."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eval_fixtures as fx
from thinkflow.evaluate.benchmarks import (
    ADAPTERS,
    PAPER_BENCHMARKS,
    BenchmarkError,
    load_benchmark,
    load_image,
)
from thinkflow.format import mcq_key


def test_paper_benchmarks_have_adapters() -> None:
    assert set(PAPER_BENCHMARKS) <= set(ADAPTERS)
    assert ADAPTERS["dynamath"].score_kind == "worst_case"
    assert ADAPTERS["wemath"].score_kind == "wemath_strict"
    assert ADAPTERS["mathverse"].default_split == "testmini"


def test_mathvista_choices_become_letters_and_types(tmp_path: Path) -> None:
    samples = load_benchmark("mathvista", str(fx.write_mathvista(tmp_path / "mv")))
    by_id = {s.id: s for s in samples}
    assert [s.id for s in samples] == ["1", "2", "3"]
    assert (by_id["1"].verifier_type, by_id["1"].solution) == ("mcq", "A")
    assert (by_id["2"].verifier_type, by_id["2"].solution) == ("digit", "2")
    assert (by_id["3"].verifier_type, by_id["3"].solution) == ("math", "0.5")
    assert by_id["1"].question.startswith("Hint:") and "(A) circle" in by_id["1"].question
    assert by_id["1"].image.mode == "RGB" and by_id["1"].image.size == (56, 56)
    assert by_id["1"].meta["category"] == "general-vqa"


def test_mathvision_options_block(tmp_path: Path) -> None:
    samples = load_benchmark("mathvision", str(fx.write_mathvision(tmp_path / "mvi")))
    assert samples[0].verifier_type == "mcq" and samples[0].solution == "A"
    assert "Options:\n(A) red\n(B) green\n(C) blue" in samples[0].question
    assert samples[1].verifier_type == "math" and samples[1].solution == "3"


def test_mathverse_keeps_only_vision_only(tmp_path: Path) -> None:
    samples = load_benchmark("mathverse", str(fx.write_mathverse(tmp_path / "mve")))
    assert [s.id for s in samples] == ["2", "3"]
    assert {s.meta["problem_version"] for s in samples} == {"Vision Only"}
    assert samples[0].question.startswith("According to the question shown in the image")
    assert (samples[0].verifier_type, samples[0].solution) == ("mcq", "B")
    assert (samples[1].verifier_type, samples[1].solution) == ("math", "60")


@pytest.mark.parametrize("layout", ["disk", "parquet"])
def test_dynamath_concatenates_variant_splits_into_groups(tmp_path: Path, layout: str) -> None:
    path = fx.write_dynamath(tmp_path / "dm", layout=layout, variants=3, seeds=2)
    samples = load_benchmark("dynamath", str(path))
    assert len(samples) == 6
    assert {s.group for s in samples} == {"1", "2"}
    assert [s.meta["variant"] for s in samples if s.group == "1"] == [
        "sample_variant1",
        "sample_variant2",
        "sample_variant3",
    ]
    assert {s.verifier_type for s in samples if s.group == "2"} == {"mcq"}
    # limit counts seed questions, keeping every variant of each
    limited = load_benchmark("dynamath", str(path), limit=1)
    assert {s.group for s in limited} == {"1"} and len(limited) == 3


def test_wemath_rows_keep_problem_and_step(tmp_path: Path) -> None:
    samples = load_benchmark("wemath", str(fx.write_wemath(tmp_path / "wm", layout="disk")))
    assert len(samples) == 7
    assert samples[0].id == "1:2steps_1" and samples[0].group == "1" and samples[0].meta["key"] == "2steps_1"
    assert samples[0].question.endswith("A. 30°;B. 45°;C. 60°;D. 90°")
    assert all(s.verifier_type == "mcq" for s in samples)


def test_logicvista_multi_letter_answers(tmp_path: Path) -> None:
    samples = load_benchmark("logicvista", str(fx.write_logicvista(tmp_path / "lv")))
    assert [s.solution for s in samples] == ["C", "A, C"]
    assert samples[0].meta == {"skill": "inductive", "reasoning": "spatial"}


def test_field_override_and_missing_field_names_it(tmp_path: Path) -> None:
    path = fx.write_logicvista(tmp_path / "lv")
    with pytest.raises(BenchmarkError, match=r"missing field 'question' \(looked for prompt\)"):
        load_benchmark("logicvista", str(path), fields={"question": "prompt"})
    samples = load_benchmark("logicvista", str(path), fields={"question": "skill"})
    assert samples[0].question == "inductive"


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="unknown benchmark 'mmmu'"):
        load_benchmark("mmmu", str(tmp_path))
    with pytest.raises(BenchmarkError, match="no such file or directory"):
        load_benchmark("mathvista", str(tmp_path / "absent"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchmarkError, match="neither a saved dataset"):
        load_benchmark("mathvista", str(empty))
    path = fx.write_dynamath(tmp_path / "dm", layout="disk")
    with pytest.raises(BenchmarkError, match=r"no split matching 'testmini'.*sample_variant1"):
        load_benchmark("dynamath", str(path), split="testmini")


def test_relative_image_paths_resolve_against_the_copy(tmp_path: Path) -> None:
    fx.picture(3).save(tmp_path / "x.png")
    im = load_image("x.png", tmp_path, where="t")
    assert im.size == (56, 56)
    with pytest.raises(BenchmarkError, match=r"image not found: 'missing\.png'"):
        load_image("missing.png", tmp_path, where="t")


@pytest.mark.parametrize(
    ("answer", "choices", "want"),
    [
        ("B", None, "B"),
        ("(b)", None, "B"),
        ("A, C", None, "A, C"),
        ("C and A", None, "A, C"),
        ("AB", None, "A, B"),
        ("circle", ["square", "circle"], "B"),
        ("Band", None, "Band"),
        ("12", None, "12"),
    ],
)
def test_mcq_key(answer: str, choices: list[str] | None, want: str) -> None:
    assert mcq_key(answer, choices) == want
