"""Registering models (local sqlite MLflow): the version page (few tags, Markdown description), idempotency,
the gate, the CLI."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thinkflow.cli import app
from thinkflow.config import load_config
from thinkflow.registry import RegisterConfig, RegistryError, list_versions, register
from thinkflow.registry.describe import MAX_TAGS, run_tags, version_description
from thinkflow.registry.lineage import content_hash, lineage_fields, missing_lineage, model_files
from thinkflow.registry.stage import read_eval

SET = "e" * 64


def metrics_doc(score: float, set_hash: str = SET) -> dict[str, Any]:
    return {
        "model": "m",
        "eval_set_hash": set_hash,
        "benchmarks": {"mathvista": {"score": score, "accuracy": score, "n": 10}},
        "overall": {"mean_score": score, "accuracy": score, "format_rate": 1.0, "mean_length": 12.0, "n": 10.0},
        "per_verifier": {"mcq": {"accuracy": score, "n": 10.0}},
        "aha": {"count.wait": 1.0, "total": 1.0, "responses_with_cue": 1.0, "rate": 0.1},
    }


def write_eval(path: Path, score: float, set_hash: str = SET) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps(metrics_doc(score, set_hash)))
    (path / "report.html").write_text("<html>report</html>")
    return path


def model_copy(tiny_model: Path, dest: Path, variant: int = 0, lineage: dict[str, Any] | None = None) -> Path:
    shutil.copytree(tiny_model, dest)
    if variant:  # another model: same weights, different generation settings
        cfg = json.loads((dest / "generation_config.json").read_text())
        cfg["max_new_tokens"] = 100 + variant
        (dest / "generation_config.json").write_text(json.dumps(cfg))
    if lineage is not None:
        (dest / "lineage.json").write_text(json.dumps(lineage))
    return dest


def train_lineage() -> dict[str, Any]:
    from thinkflow.train.lineage import build_lineage

    lin = build_lineage(
        stage="grpo",
        config={"learning_rate": 1e-6, "reward": {"beta": 1.0}},
        base_model="s3://m/base",
        data="s3://d/vlaa",
        manifest_hash="sha256:abc",
        split="rl",
        num_examples=10,
        global_step=4,
        metrics={"reward": 0.5},
        mlflow_run_id="run123",
    )
    lin.update(
        {
            "pipeline_run_id": "kfp-run-7",
            "image": "ghcr.io/x/thinkflow-trainer:1.0",
            "reward_mix": {"digit": "rule", "open": "rm"},
        }
    )
    return lin


def test_content_hash_ignores_lineage_and_checkpoints(tiny_model: Path, tmp_path: Path) -> None:
    a = model_copy(tiny_model, tmp_path / "a")
    digest = content_hash(a)
    (a / "lineage.json").write_text("{}")
    (a / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (a / "checkpoints" / "checkpoint-2" / "model.safetensors").write_bytes(b"old")
    assert content_hash(a) == digest
    assert not [f for f in model_files(a) if f.parts[0] == "checkpoints"]
    assert content_hash(model_copy(tiny_model, tmp_path / "b", variant=1)) != digest


def test_lineage_from_the_training_stage_file_goes_to_the_run_and_the_description() -> None:
    fields = lineage_fields(train_lineage())
    assert missing_lineage(fields) == []
    tags = run_tags(fields, [], True)  # the register run carries every lineage field
    assert tags["lineage.dataset_uri"] == "s3://d/vlaa" and tags["lineage.dataset_manifest_hash"] == "sha256:abc"
    assert tags["lineage.base_model"] == "s3://m/base" and tags["lineage.stage"] == "grpo"
    assert tags["lineage.pipeline_run_id"] == "kfp-run-7" and tags["lineage.training_run_id"] == "run123"
    assert json.loads(tags["lineage.config"])["learning_rate"] == 1e-6
    assert json.loads(tags["lineage.reward_mix"]) == {"digit": "rule", "open": "rm"}
    assert "transformers" in json.loads(tags["lineage.versions"]) and tags["lineage.missing"] == "none"
    text = version_description(
        note="Nightly build.",
        source="s3://m/out",
        digest="d" * 64,
        fields=fields,
        missing=[],
        lineage_present=True,
        metrics=metrics_doc(0.4),
        eval_uri="s3://e/1",
        register_run_id="reg9",
    )
    assert text.startswith("Nightly build.") and "## Evaluation" in text and "## Lineage" in text
    assert "| **overall** | 0.4000 | 0.4000 | 1.0000 |" in text  # mean score, accuracy, format rate
    assert "| `mathvista` |" in text and "verifier `mcq`" in text
    assert "[`run123`](#/runs/run123)" in text and "[`reg9`](#/runs/reg9)" in text  # training and register runs
    assert "`s3://d/vlaa` (split `rl`, manifest `sha256:abc`)" in text and "`s3://e/1`" in text
    fields = lineage_fields(None)
    missing = missing_lineage(fields)
    assert "dataset_uri" in missing and "git_sha" in missing
    tags = run_tags(fields, missing, False)
    assert tags["lineage.file"] == "absent" and tags["lineage.missing"].startswith("dataset_uri, dataset_manifest_hash")


def test_register_defaults_need_no_config() -> None:
    cfg = load_config(RegisterConfig, None, [])
    assert cfg.model and cfg.eval and cfg.name and cfg.gate.metric == "overall.mean_score"


def test_read_eval_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="run `thinkflow evaluate` first"):
        read_eval(str(tmp_path))
    (tmp_path / "metrics.json").write_text('{"x": 1}')
    with pytest.raises(RegistryError, match="no 'overall' key"):
        read_eval(str(tmp_path))


def test_register_gate_idempotent_and_list(tiny_model: Path, tmp_path: Path, mlflow_local: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    first = model_copy(tiny_model, tmp_path / "m1", lineage=train_lineage())
    (first / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (first / "checkpoints" / "checkpoint-1" / "optimizer.pt").write_bytes(b"x" * 100)
    r1 = register(RegisterConfig(model=str(first), eval=str(write_eval(tmp_path / "e1", 0.40)), name="vlm"))
    assert r1.output == "models:/vlm/1" and r1.metrics["created"] == 1 and r1.metrics["promoted"] == 1
    reg = r1.registration
    assert (reg.name, reg.version, reg.alias, reg.uri, reg.created) == ("vlm", "1", "champion", "models:/vlm/1", True)
    mv = client.get_model_version("vlm", "1")
    # the version page: a few tags a person filters by (issue 18) ...
    assert set(mv.tags) == {
        "thinkflow.content_hash",
        "thinkflow.source",
        "lineage.stage",
        "lineage.base_model",
        "lineage.dataset_uri",
        "eval.set_hash",
        "eval.overall.mean_score",
        "gate.decision",
        "gate.champion_version",
    }
    assert len(mv.tags) <= MAX_TAGS and mv.tags["lineage.dataset_uri"] == "s3://d/vlaa"
    assert float(mv.tags["eval.overall.mean_score"]) == 0.40 and mv.tags["eval.set_hash"] == SET
    assert mv.tags["thinkflow.content_hash"] == content_hash(first) and mv.tags["gate.decision"] == "promoted"
    # ... and a Markdown description: metrics, lineage with links, the gate's decision and reasoning last
    desc = mv.description
    assert "| **overall** | 0.4000 |" in desc and "[`run123`](#/runs/run123)" in desc and "sha256:abc" in desc
    assert f"[`{r1.mlflow_run_id}`](#/runs/{r1.mlflow_run_id})" in desc
    assert desc.index("## Lineage") < desc.index("## Gate decision") and "**promoted**" in desc
    assert "no champion yet" in desc.split("## Gate decision")[1]
    assert set(client.get_registered_model("vlm").aliases) == {"challenger", "champion"}
    # the transformers flavor, logged from the directory: weights, processor, lineage; no checkpoints
    files = {f.path for f in mlflow.artifacts.list_artifacts(artifact_uri="models:/vlm/1/model")}
    assert "model/config.json" in files and "model/lineage.json" in files and "model/checkpoints" not in files
    flavor = mlflow.models.get_model_info("models:/vlm/1").flavors["transformers"]
    assert flavor["task"] == "image-text-to-text" and flavor["processor_type"].endswith("Processor")
    run = mlflow.get_run(r1.mlflow_run_id)
    assert run.data.tags["thinkflow.stage"] == "register" and run.data.metrics["overall.mean_score"] == 0.40
    assert {"lineage.json", "eval"} <= {f.path for f in mlflow.artifacts.list_artifacts(run_id=r1.mlflow_run_id)}
    assert run.data.tags["lineage.pipeline_run_id"] == "kfp-run-7"  # the full lineage stays on the run
    # the model card logged with the weights is the same description
    card = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/vlm/1/model_card.md")).read_text()
    assert card.startswith("# vlm") and desc.split("## Gate decision")[0].strip() in card

    # idempotent: same content -> same version, nothing new; what older releases tagged (76 tags) is cleaned up
    for key in ("eval.mathvista.score", "eval.uri", "lineage.config", "lineage.missing", "gate.reason", "promote.by"):
        client.set_model_version_tag("vlm", "1", key, "old")
    again = register(RegisterConfig(model=str(first), eval=str(tmp_path / "e1"), name="vlm"))
    assert again.output == "models:/vlm/1" and again.metrics["created"] == 0
    assert again.registration.alias == "champion" and not again.registration.created
    assert client.get_model_version("vlm", "1").tags == mv.tags
    assert client.get_model_version("vlm", "1").description == desc  # unchanged, gate section kept
    assert len(client.search_model_versions("name = 'vlm'")) == 1

    # a worse model: challenger, not champion
    worse = register(
        RegisterConfig(
            model=str(model_copy(tiny_model, tmp_path / "m2", 2)),
            eval=str(write_eval(tmp_path / "e2", 0.30)),
            name="vlm",
        )
    )
    assert worse.output == "models:/vlm/2" and worse.metrics["promoted"] == 0
    aliases = client.get_registered_model("vlm").aliases
    assert str(aliases["champion"]) == "1" and str(aliases["challenger"]) == "2"
    assert worse.artifacts["gate"] == "rejected" and "lineage_missing" in worse.artifacts  # no lineage.json
    assert worse.registration.alias == "challenger" and worse.registration.gate is not None
    assert "Unknown lineage: dataset_uri" in client.get_model_version("vlm", "2").description

    # a better model on another eval set: not comparable, not promoted
    other = register(
        RegisterConfig(
            model=str(model_copy(tiny_model, tmp_path / "m3", 3)),
            eval=str(write_eval(tmp_path / "e3", 0.90, "f" * 64)),
            name="vlm",
        )
    )
    assert other.metrics["promoted"] == 0 and "different eval set" in other.artifacts["gate_reason"]

    # the rejected model evaluated again (its eval.* tags replaced): gated again, still not better
    again2 = register(
        RegisterConfig(model=str(tmp_path / "m2"), eval=str(write_eval(tmp_path / "e2b", 0.35)), name="vlm")
    )
    assert again2.output == "models:/vlm/2" and again2.metrics["created"] == 0 and again2.metrics["promoted"] == 0
    assert again2.registration.gate is not None and again2.registration.gate.challenger_value == 0.35
    v2 = client.get_model_version("vlm", "2")
    assert float(v2.tags["eval.overall.mean_score"]) == 0.35 and "| **overall** | 0.3500 |" in v2.description
    assert v2.description.count("## Gate decision") == 1 and "0.3500" in v2.description.split("## Gate decision")[1]
    # the re-evaluation is what a report reads back as the version's baseline
    from thinkflow.evaluate.report import load_baseline

    label, baseline = load_baseline("models:/vlm/2")
    assert label == "vlm/2" and baseline["overall"]["mean_score"] == 0.35

    # a better model on the same eval set: promoted
    better = register(
        RegisterConfig(
            model=str(model_copy(tiny_model, tmp_path / "m4", 4)),
            eval=str(write_eval(tmp_path / "e4", 0.55)),
            name="vlm",
        )
    )
    assert better.metrics["promoted"] == 1 and str(client.get_registered_model("vlm").aliases["champion"]) == "4"

    rows = list_versions("vlm")
    assert [r["version"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[3]["aliases"] == ["challenger", "champion"] and rows[0]["gate"] == "promoted"
    assert rows[1]["metrics"] == {"overall.mean_score": 0.35}
    with pytest.raises(RegistryError, match="no registered model named 'nope'"):
        list_versions("nope")


def test_cli_register_promote_list(tiny_model: Path, tmp_path: Path, mlflow_local: str) -> None:
    runner = CliRunner()
    model = model_copy(tiny_model, tmp_path / "m")
    ev = write_eval(tmp_path / "e", 0.2)
    result = runner.invoke(app, ["register", "--set", f"model={model}", "--set", f"eval={ev}", "--set", "name=cli-vlm"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "registered models:/cli-vlm/1" in out and "gate: promoted (no champion yet (no base-model evaluation" in out
    assert "lineage unknown: dataset_uri" in out and "(no lineage.json)" in out
    other = model_copy(tiny_model, tmp_path / "m2", 1)
    result = runner.invoke(app, ["register", "--set", f"model={other}", "--set", "eval=null", "--set", "name=cli-vlm"])
    assert result.exit_code == 0, result.output
    assert "gate: rejected" in " ".join(result.output.split())
    result = runner.invoke(app, ["promote", "cli-vlm", "2", "--reason", "canary passed"])
    assert result.exit_code == 0, result.output
    assert "cli-vlm version 2 is @champion" in result.output and "(was: 1)" in result.output
    result = runner.invoke(app, ["models", "list", "cli-vlm"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    # not a terminal (piped): tab-separated lines, nothing truncated whatever the width
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert lines[0] == ["version", "aliases", "created", "gate", "mean score", "scores", "content"]
    assert [line[:2] for line in lines[1:]] == [["1", ""], ["2", "@challenger, @champion"]]
    assert lines[1][3:5] == ["promoted", "0.2000"] and lines[2][3] == "manual"
    assert lines[1][6] == content_hash(model) and len(lines[1][6]) == 64
    result = runner.invoke(app, ["promote", "cli-vlm", "9", "--reason", "x"])
    assert result.exit_code == 1 and "error: cli-vlm version 9" in result.output
    result = runner.invoke(app, ["register", "--set", f"model={tmp_path / 'absent'}"])
    assert result.exit_code == 1 and "error: model:" in result.output
