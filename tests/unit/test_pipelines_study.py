"""`thinkflow.evaluate.compare.compare`: the paper-style comparison table of the SFT-or-RL study."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from thinkflow.config import ConfigError
from thinkflow.evaluate.compare import CompareConfig, CompareError, compare


@pytest.fixture(scope="module", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "THINKFLOW_PARENT_RUN_ID")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    os.environ.pop("THINKFLOW_PARENT_RUN_ID", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def evaluation(
    root: Path, label: str, scores: dict[str, float], *, length: float, fmt: float, eval_hash: str = "h1"
) -> str:
    """An evaluate output directory with the metrics.json layout `thinkflow.evaluate` writes."""
    out = root / label
    out.mkdir(parents=True)
    doc: dict[str, Any] = {
        "model": f"/models/{label}",
        "eval_set_hash": eval_hash,
        "benchmarks": {b: {"score": s, "accuracy": s, "n": 16} for b, s in scores.items()},
        "overall": {
            "mean_score": sum(scores.values()) / len(scores),
            "accuracy": sum(scores.values()) / len(scores),
            "format_rate": fmt,
            "mean_length": length,
            "n": 32.0,
        },
        "per_verifier": {"digit": {"accuracy": 0.5, "n": 8}},
    }
    (out / "metrics.json").write_text(json.dumps(doc))
    return str(out)


def test_table_rows_columns_best_and_delta(tmp_path: Path) -> None:
    grpo = evaluation(tmp_path, "g", {"mathvista": 0.5, "wemath": 0.25}, length=120, fmt=0.9)
    sft = evaluation(tmp_path, "s", {"mathvista": 0.375, "wemath": 0.125}, length=300, fmt=1)
    both = evaluation(tmp_path, "sg", {"mathvista": 0.4375, "wemath": 0.25}, length=90, fmt=0.8)
    evals = [{"label": label, "results": r} for label, r in (("grpo", grpo), ("sft", sft), ("sft_grpo", both))]
    cfg = CompareConfig(evaluations=evals, output_dir=str(tmp_path / "cmp"), baseline="grpo")
    result = compare(cfg)
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert lines[0] == "| Recipe | mathvista | wemath | Avg | Format | Length | Δ Avg vs GRPO |"
    assert lines[2] == "| GRPO | **50.0** | **25.0** | **37.5** | 90.0 | 120.0 | – |"
    assert lines[3] == "| SFT | 37.5 | 12.5 | 25.0 | **100.0** | 300.0 | -12.5 |"
    assert lines[4] == "| SFT → GRPO | 43.8 | **25.0** | 34.4 | 80.0 | 90.0 | -3.1 |"
    assert result.stage == "compare_study"
    assert result.metrics["sft.overall.mean_score"] == 0.25
    assert result.metrics["grpo.benchmarks.mathvista.score"] == 0.5
    assert result.artifacts["table"] == str(tmp_path / "cmp" / "comparison.md")
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert data["rows"]["sft_grpo"]["overall.mean_length"] == 90
    assert data["eval_set_hash"] == {"grpo": "h1", "sft": "h1", "sft_grpo": "h1"}

    from mlflow.tracking import MlflowClient

    run = MlflowClient().get_run(result.mlflow_run_id or "")
    assert run.data.tags["thinkflow.stage"] == "compare_study"
    assert run.data.metrics["sft_grpo.overall.mean_score"] == pytest.approx(0.34375)


def test_chosen_columns_and_fractions(tmp_path: Path) -> None:
    evals = [{"label": "a", "results": evaluation(tmp_path, "a", {"x": 0.5}, length=10, fmt=1.0)}]
    cfg = CompareConfig(evaluations=evals, output_dir=str(tmp_path / "o"), columns=["overall.accuracy"], percent=False)
    compare(cfg)
    md = (tmp_path / "o" / "comparison.md").read_text()
    assert "| Recipe | overall.accuracy |" in md and "| a | 0.5 |" in md
    with pytest.raises(CompareError, match=r"columns not found in any metrics\.json: nope"):
        compare(cfg.model_copy(update={"columns": ["nope"]}))


def test_refuses_different_eval_sets(tmp_path: Path) -> None:
    evals = [
        {"label": "grpo", "results": evaluation(tmp_path, "g", {"x": 0.5}, length=1, fmt=1, eval_hash="aaa")},
        {"label": "sft", "results": evaluation(tmp_path, "s", {"x": 0.5}, length=1, fmt=1, eval_hash="bbb")},
    ]
    cfg = CompareConfig(evaluations=evals, output_dir=str(tmp_path / "o"))
    with pytest.raises(CompareError, match="different eval sets"):
        compare(cfg)
    compare(cfg.model_copy(update={"same_eval_set": False}))


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match=r"evaluation 'grpo': no metrics\.json in .*empty"):
        compare(CompareConfig(evaluations=[{"label": "grpo", "results": str(tmp_path / "empty")}], output_dir="o"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{nope")
    with pytest.raises(CompareError, match=r"evaluation 'x':.*not valid JSON"):
        compare(CompareConfig(evaluations=[{"label": "x", "results": str(tmp_path / "bad")}], output_dir="o"))
    with pytest.raises(ValueError, match="duplicate evaluation labels: a"):
        CompareConfig(evaluations=[{"label": "a", "results": "p"}, {"label": "a", "results": "q"}], output_dir="o")
    with pytest.raises(ValueError, match="baseline 'dpo' is not one of the labels"):
        CompareConfig(evaluations=[{"label": "a", "results": "p"}], output_dir="o", baseline="dpo")


def test_component_config_errors_name_the_key() -> None:
    from thinkflow.config import stage_config

    with pytest.raises(ConfigError, match="unknown key 'colums'"):
        stage_config(CompareConfig, None, {"colums": ["a"]}, evaluations=[], output_dir="o")
