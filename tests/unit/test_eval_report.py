"""The report: plots, report.md, a self-contained report.html, baselines and training curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from thinkflow.evaluate.report import THUMBNAIL_PX, Example, load_baseline, write_report


def _summary(score: float) -> dict[str, Any]:
    return {
        "benchmarks": {
            "mathvista": {
                "score": score,
                "score_kind": "accuracy",
                "accuracy": score,
                "format_rate": 0.9,
                "mean_length": 120.0,
                "n": 10,
            },
            "wemath": {
                "score": score / 2,
                "score_kind": "wemath_strict",
                "accuracy": score,
                "format_rate": 0.8,
                "mean_length": 140.0,
                "n": 7,
                "wemath": {
                    "n_problems": 2,
                    "strict": score / 2,
                    "loose": score,
                    "IK": 1,
                    "IG": 0,
                    "CM_strict": 1,
                    "RM_strict": 0,
                },
            },
        },
        "overall": {
            "mean_score": 0.75 * score,
            "accuracy": score,
            "format_rate": 0.85,
            "mean_length": 130.0,
            "n": 17.0,
        },
        "per_verifier": {"mcq": {"accuracy": score, "format_rate": 0.85, "mean_reward": score, "n": 17.0}},
        "aha": {"count.wait": 3.0, "count.hmm": 1.0, "total": 4.0, "responses_with_cue": 2.0, "rate": 2 / 17},
    }


def _example(i: int, correct: bool) -> Example:
    return Example.of(_pred_row(i, correct), Image.new("RGB", (640, 480), (200, 30 * i, 90)))


def _pred_row(i: int, correct: bool) -> dict[str, Any]:
    return {
        "benchmark": "mathvista",
        "id": f"q{i}",
        "question": f"What is {i} + 1?",
        "completion": f"<think>add ```one```</think><answer>{i + 1 if correct else 0}</answer>",
        "answer": str(i + 1 if correct else 0),
        "solution": str(i + 1),
        "verifier_type": "digit",
        "reward": float(correct),
        "correct": correct,
        "well_formed": True,
    }


def test_report_panels_examples_and_embedded_images(tmp_path: Path) -> None:
    summary = _summary(0.6)
    summary["base"] = {"model": "/models/base", "overall": {}, "per_verifier": {"mcq": {"accuracy": 0.2, "n": 17.0}}}
    curves = {
        "reward": [(1, 0.1), (2, 0.3), (3, 0.5)],
        "mixed_reward/math/accuracy": [(1, 0.0), (2, 0.5), (3, 0.5)],
        "mixed_reward/mcq/accuracy": [(1, 0.2), (3, 0.6)],
        "mixed_reward/format_failure": [(1, 0.9), (2, 0.4), (3, 0.1)],
        "completions/mean_length": [(1, 50.0), (2, 80.0), (3, 90.0)],
    }
    examples = [_example(i, i % 2 == 0) for i in range(4)]
    examples[3].completion = Example.of({**_pred_row(3, False), "completion": "\n\n\n"}, examples[3].image).completion
    paths = write_report(
        summary,
        tmp_path,
        model="/abs/model",
        baseline=("base", _summary(0.4)),
        curves=curves,
        facts=[("eval set", "abc")],
        examples=examples,
    )
    panels = ["benchmarks", "verifier_accuracy", "verifier_format_failure", "verifier_reward", "aha"]
    panels += ["training_accuracy", "training_format_failure", "training_reward", "training_length"]
    assert set(paths) == {"report_md", "report_html", *panels}
    for name in panels:  # separate panels, each a real PNG
        with Image.open(paths[name]) as im:
            assert im.format == "PNG" and im.size[0] > 300, name
    thumbs = sorted((tmp_path / "examples").iterdir())
    assert len(thumbs) == 4 and all(p.stat().st_size > 0 for p in thumbs)
    with Image.open(thumbs[0]) as im:
        assert max(im.size) == THUMBNAIL_PX
    md = (tmp_path / "report.md").read_text()
    for name in panels:
        assert f"]({name}.png)" in md, name
    assert "| mathvista | 60.0 | 40.0 | +20.0 | accuracy | rules |" in md
    assert "| wait | 3 |" in md and "responses with a cue | 2 (11.8%)" in md
    assert "four-dimensional diagnosis" in md
    section = md.split("## Example predictions", 1)[1]
    assert section.count("### ") == 4 and section.count("**Question**: What is") == 4
    assert section.count("**Verdict**: correct: answer '1', solution '1'") == 1
    assert section.count("**Verdict**: wrong: answer '0', solution '2'") == 1
    assert "````text\n<think>add ```one```" in section  # a fence longer than the completion's backticks
    assert "(nothing but whitespace: 3 characters)" in section  # a blank completion is said, not left blank
    for thumb in thumbs:
        assert f"](examples/{thumb.name})" in section
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(panels) + 4 and "src='benchmarks.png'" not in html
    assert "<td>+20.0</td>" in html and html.count("<div class='example'>") == 4


def test_the_training_curves_mark_every_logged_step(tmp_path: Path) -> None:
    from thinkflow.evaluate.plots import training_panels

    steps = list(range(0, 40, 3))
    panels = training_panels({"reward": [(s, s / 40) for s in steps]}, tmp_path)
    drawn = next(p for p in panels if p.image)
    assert drawn.image is not None and drawn.image.name == "training_reward.png"
    # a panel the run logged nothing for says so
    assert {p.title: p.note for p in panels if not p.image}["Training: format failure"].startswith("the training run")


def test_all_zero_series_are_words_not_plots(tmp_path: Path) -> None:
    summary = _summary(0.0)
    summary["aha"] = {"count.wait": 0.0, "count.hmm": 0.0, "total": 0.0, "responses_with_cue": 0.0, "rate": 0.0}
    summary["per_verifier"] = {"mcq": {"accuracy": 0.0, "format_rate": 1.0, "mean_reward": 0.0, "n": 17.0}}
    curves = {
        "reward": [(1, 0.0), (2, 0.0)],
        "mixed_reward/mcq/accuracy": [(1, 0.0), (2, 0.0)],
        "mixed_reward/format_failure": [(1, 0.0), (2, 0.0)],
        "completions/mean_length": [(1, 30.0), (2, 31.0)],
    }
    paths = write_report(summary, tmp_path, model="m", curves=curves)
    assert set(paths) == {"report_md", "report_html", "training_length"}
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["training_length.png"]
    md = (tmp_path / "report.md").read_text()
    assert "**Aha cues (0 of 17 responses have one)**: no aha cues in 17 responses." in md
    assert "**Benchmark scores**: every benchmark scored 0 (17 samples)." in md
    assert "**Accuracy per verifier type**: no correct answer of any verifier type (17 samples)." in md
    assert "**Format failure per verifier type**: no format failures: all 17 responses are well-formed." in md
    assert "**Training: mean reward**: 0 at every one of the 2 logged steps (reward)." in md
    assert "**Training: accuracy per verifier**: 0 at every one of the 2 logged steps (mcq)." in md
    assert "**Training: format failure**: no format failures at any of the 2 logged steps." in md
    assert "no aha cues in 17 responses" in (tmp_path / "report.html").read_text()


def test_report_without_baseline_or_curves(tmp_path: Path) -> None:
    paths = write_report(_summary(0.5), tmp_path, model="m")
    assert (
        not any(name.startswith("training_") for name in paths)
        and "## Example predictions" not in (tmp_path / "report.md").read_text()
    )
    md = (tmp_path / "report.md").read_text()
    assert "| benchmark | score | metric |" in md and "delta" not in md


def test_load_baseline_from_metrics_json(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"model": "base-3b", **_summary(0.3)}))
    label, data = load_baseline(str(tmp_path))
    assert label == "base-3b" and data["overall"]["mean_score"] == pytest.approx(0.225)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'benchmarks' key"):
        load_baseline(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="cannot read"):
        load_baseline(str(tmp_path / "absent"))


def test_reference_rows_beside_this_run_and_the_scoring_mode(tmp_path: Path) -> None:
    from thinkflow.evaluate.report import load_reference

    summary = _summary(0.6)
    summary["benchmarks"]["mathvista"]["scoring"] = "judge (gpt-4o-mini)"
    ref = tmp_path / "ref.yaml"
    ref.write_text(
        "source: a published table (test data)\n"
        "rows:\n  model-a: {mathvista: 50.0, wemath: 20.5, average: 35.25}\n  model-b: {mathvista: 61.2}\n"
    )
    write_report(summary, tmp_path / "out", model="m", reference=load_reference(str(ref)))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Reference (a published table (test data))" in md
    assert "| model | mathvista | wemath | average |" in md
    assert "| model-a | 50.0 | 20.5 | 35.2 |" in md and "| model-b | 61.2 | n/a | n/a |" in md
    assert "| **this run** | 60.0 | 30.0 | 45.0 |" in md
    assert (
        "| mathvista | 60.0 | accuracy | judge (gpt-4o-mini) |" in md
        and "| wemath | 30.0 | wemath_strict | rules |" in md
    )
    ref.write_text("rows: {a: {mathvista: 1}}\n")
    with pytest.raises(ValueError, match="non-empty 'source'"):
        load_reference(str(ref))
    ref.write_text("source: s\nrows: {a: {mathvista: high}}\n")
    with pytest.raises(ValueError, match="row 'a' has a score that is not a number"):
        load_reference(str(ref))


def test_baseline_of_a_registered_version_is_its_logged_evaluation(mlflow_local: str) -> None:
    """``models:/NAME@alias``: the eval/metrics.json the version's registration run logged (read through MLflow)."""
    import mlflow
    from mlflow import MlflowClient

    with mlflow.start_run() as run:
        mlflow.log_dict({"model": "/m", **_summary(0.3)}, "eval/metrics.json")
    client = MlflowClient()
    client.create_registered_model("vlm")
    mv = client.create_model_version("vlm", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("vlm", "champion", mv.version)
    for ref in ("models:/vlm@champion", f"models:/vlm/{mv.version}"):
        label, data = load_baseline(ref)
        assert label == ref.removeprefix("models:/") and data["benchmarks"]["mathvista"]["score"] == 0.3
    with pytest.raises(ValueError, match="baseline models:/vlm@nobody: no evaluation logged"):
        load_baseline("models:/vlm@nobody")
