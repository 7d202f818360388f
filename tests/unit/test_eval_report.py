"""The report: plots, report.md, a self-contained report.html, baselines and training curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from thinkflow.evaluate.report import load_baseline, write_report


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
        "per_verifier": {"mcq": {"accuracy": score, "n": 17.0}},
        "aha": {"count.wait": 3.0, "count.hmm": 1.0, "total": 4.0, "responses_with_cue": 2.0, "rate": 2 / 17},
    }


def test_report_files_tables_and_embedded_plots(tmp_path: Path) -> None:
    baseline = ("base", _summary(0.4))
    curves = {"reward": [(1, 0.1), (2, 0.3), (3, 0.5)], "completions/mean_length": [(1, 50.0), (2, 80.0), (3, 90.0)]}
    paths = write_report(
        _summary(0.6), tmp_path, model="m", baseline=baseline, curves=curves, facts=[("eval set", "abc")]
    )
    for name in ("report_md", "report_html", "benchmarks", "aha", "training_curves"):
        assert paths[name].is_file(), name
    for png in ("benchmarks.png", "aha.png", "training_curves.png"):
        with Image.open(tmp_path / png) as im:
            assert im.format == "PNG" and im.size[0] > 300
    md = (tmp_path / "report.md").read_text()
    assert "| mathvista | 60.0 | 40.0 | +20.0 | accuracy | rules |" in md
    assert "![Training reward and completion length](training_curves.png)" in md
    assert "| wait | 3 |" in md and "responses with a cue | 2 (11.8%)" in md
    assert "four-dimensional diagnosis" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "src='benchmarks.png'" not in html
    assert "<td>+20.0</td>" in html


def test_report_without_baseline_or_curves(tmp_path: Path) -> None:
    paths = write_report(_summary(0.5), tmp_path, model="m")
    assert "training_curves" not in paths
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
