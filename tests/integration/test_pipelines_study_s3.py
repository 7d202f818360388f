"""The study's comparison reads evaluations from and writes its table to S3 (a real loopback S3 server)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from thinkflow import storage
from thinkflow.evaluate.compare import CompareConfig, compare


def test_compare_on_s3(tmp_path: Path, s3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("THINKFLOW_PARENT_RUN_ID", raising=False)
    local = tmp_path / "grpo"
    local.mkdir()
    metrics = {"eval_set_hash": "h", "benchmarks": {"x": {"score": 0.5}}, "overall": {"mean_score": 0.5}}
    (local / "metrics.json").write_text(json.dumps(metrics))
    storage.upload(local, "s3://study/evals/grpo")
    result = compare(
        CompareConfig(evaluations=[{"label": "grpo", "results": "s3://study/evals/grpo"}], output_dir="s3://study/cmp")
    )
    assert result.output == "s3://study/cmp"
    assert "| GRPO | 50.0 | 50.0 |" in storage.read_text("s3://study/cmp/comparison.md")
    assert json.loads(storage.read_text("s3://study/cmp/comparison.json"))["rows"]["grpo"]["overall.mean_score"] == 0.5
    assert os.environ["AWS_ENDPOINT_URL"] == s3
