"""Whole pipelines with kfp.local (SubprocessRunner, this interpreter) on the embedded default: synthetic
data, the tiny model, MLflow in sqlite under the root, artifacts under the root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinkflow.pipelines import run_local

pytestmark = pytest.mark.slow


def child_runs(tracking_uri: str, parent: str) -> dict[str, str]:
    """stage -> status of the MLflow runs nested under the pipeline's parent run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=100)
    out: dict[str, str] = {}
    for run in runs:
        label = run.data.tags.get("thinkflow.stage", run.info.run_name)
        out[label] = run.info.status
    return out


def test_vlaa_thinker_runs_locally(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from thinkflow.cli import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the local default store: <root>/mlflow.db
    monkeypatch.chdir(tmp_path)
    root = tmp_path / ".thinkflow"
    # A random model never stops: short completions keep this plumbing test as fast as it was.
    # (tests/e2e/test_demo_learns.py runs the embedded default as is, warm start included.)
    short = {
        "grpo_overrides": {"max_completion_length": 32, "max_steps": 4},
        "eval_overrides": {"max_new_tokens": 32, "limit": 16},
    }
    result = run_local("vlaa_thinker", root, short, model=str(tiny_model))

    assert result.state == "SUCCEEDED"
    assert result.tracking_uri == f"sqlite:///{root.resolve() / 'mlflow.db'}"
    # The registered version. A random base model learns nothing in 4 GRPO steps: the trained model does not
    # beat the base model evaluated on the same samples, so the gate declines and says so (@challenger only).
    assert result.registered is not None
    assert result.registered["name"] == "thinkflow-vlm"
    assert result.registered["version"] == "1"
    assert result.registered["alias"] == "challenger"
    assert "does not beat the base model" in result.registered["gate_reason"]
    assert "evaluate.base.overall.format_rate" in result.metrics  # the summary's "before"
    # Every command uses the same store: `models list` finds the version without MLFLOW_TRACKING_URI.
    listed = CliRunner().invoke(app, ["models", "list", "thinkflow-vlm"])
    assert listed.exit_code == 0, listed.output
    assert f"MLflow store: sqlite:///{root.resolve() / 'mlflow.db'}" in listed.output
    assert "@challenger" in listed.output and "rejected" in listed.output
    # The report and the metrics it is made from, under the root.
    assert result.report is not None and Path(result.report).is_file()
    assert Path(result.report).resolve().is_relative_to(root.resolve())
    metrics = json.loads((Path(result.report).parent / "metrics.json").read_text())
    assert metrics["overall"]["n"] == result.metrics["evaluate.overall.n"] > 0
    assert 0.0 <= result.metrics["evaluate.overall.mean_score"] <= 1.0
    # The trained model artifact: loadable layout with its lineage beside the weights.
    model_dir = Path(result.outputs["grpo.artifact"])
    assert (model_dir / "config.json").is_file() and (model_dir / "lineage.json").is_file()
    lineage = json.loads((model_dir / "lineage.json").read_text())
    assert lineage["stage"] == "grpo"
    # One parent run per pipeline run, every stage nested under it, all finished.
    children = child_runs(result.tracking_uri, result.parent_run_id)
    assert {"build", "validate", "grpo", "evaluate", "register"} <= set(children)
    assert set(children.values()) == {"FINISHED"}

    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["model"] == str(tiny_model)
    version = client.get_model_version("thinkflow-vlm", "1")
    assert "champion" not in client.get_registered_model("thinkflow-vlm").aliases
    assert version.tags["gate.decision"] == "rejected"  # lineage, eval and gate tags from the registry


def test_study_runs_locally(tmp_path: Path, tiny_model: Path) -> None:
    """ParallelFor over the three recipes, If/Elif/Else branches, OneOf, Collected, compare_study."""
    short = {
        "sft_overrides": {"max_steps": 2, "save_steps": 2},
        "grpo_overrides": {"max_steps": 2},
        "eval_overrides": {"limit": 4},
    }
    result = run_local("sft_vs_rl_study", tmp_path / "root", short, model=str(tiny_model))

    assert result.state == "SUCCEEDED"
    assert result.comparison is not None
    table = Path(result.comparison).read_text()
    for row in ("| GRPO |", "| SFT |", "| SFT → GRPO |"):
        assert row in table
    data = json.loads((Path(result.comparison).parent / "comparison.json").read_text())
    assert set(data["rows"]) == {"grpo", "sft", "sft_grpo"}
    assert len(set(data["eval_set_hash"].values())) == 1  # the same eval set for every recipe
    for recipe in ("grpo", "sft", "sft_grpo"):
        assert f"{recipe}/evaluate.overall.mean_score" in result.metrics
    # sft_grpo's GRPO started from its SFT model.
    grpo_lineage = json.loads((Path(result.outputs["sft_grpo/grpo.artifact"]) / "lineage.json").read_text())
    assert grpo_lineage["base_model"]["stage"] == "sft"
    assert Path(grpo_lineage["base_model"]["uri"]).resolve() == Path(result.outputs["sft_grpo/sft.artifact"]).resolve()
    children = child_runs(result.tracking_uri, result.parent_run_id)
    assert {"build", "validate", "sft", "grpo", "evaluate", "compare_study"} <= set(children)


def test_vlaa_thinker_sharded_build_runs_locally(tmp_path: Path, tiny_model: Path) -> None:
    """build_shards=3: plan_shards -> ParallelFor of build_shard -> merge_dataset (dsl.Collected) -> the rest,
    and the merged dataset is the one the single build task writes."""
    root = tmp_path / "root"
    short = {
        "build_shards": "3",
        "grpo_overrides": {"max_completion_length": 32, "max_steps": 2},
        "eval_overrides": {"max_new_tokens": 32, "limit": 8},
    }
    result = run_local("vlaa_thinker", root, model=str(tiny_model), arguments=short)
    assert result.state == "SUCCEEDED"
    assert result.registered is not None and result.registered["version"] == "1"
    children = child_runs(result.tracking_uri, result.parent_run_id)
    assert {"build", "merge", "validate", "grpo", "evaluate", "register"} <= set(children)
    assert set(children.values()) == {"FINISHED"}
    merged = [p.parent for p in (root / "pipeline-root").rglob("manifest.json") if (p.parent / "sft.jsonl").exists()]
    (dataset,) = merged
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert [s["shard"] for s in manifest["shards"]] == ["0/3", "1/3", "2/3"]

    from thinkflow.config import load_config
    from thinkflow.data.build import BuildConfig, run

    ref = tmp_path / "ref"
    run(load_config(BuildConfig, "tiny-data", [f"output_dir={ref}", "tracking=false", "progress=false"]))
    for name in ("sft.jsonl", "rl.jsonl", "eval.jsonl", "rejected.jsonl"):
        assert (dataset / name).read_bytes() == (ref / name).read_bytes(), name
