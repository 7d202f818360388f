"""What component bodies call: configs from preset + overrides (`thinkflow.config.stage_config`), the workspace,
the MLflow parent run shared through the workspace (`thinkflow.tracking`), publishing results onto it, reading a
registration, the study's recipes and the evaluate tasks' helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from thinkflow import env, tracking
from thinkflow.components import runtime
from thinkflow.config import ConfigError, StageConfig, StageResult, stage_config
from thinkflow.evaluate.tasks import with_eval_dataset
from thinkflow.train.recipes import check_recipes


class Inner(BaseModel):
    scorer: str = "rule"
    weight: float = 1.0


class Toy(StageConfig):
    model: str
    data: str = "d"
    max_steps: int = -1
    learning_rate: float = 1e-5
    name: str = "n"
    reward: Inner = Inner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    saved = os.environ.get(env.MLFLOW_TRACKING_URI)
    os.environ[env.MLFLOW_TRACKING_URI] = uri
    try:
        yield uri
    finally:
        if saved is None:
            os.environ.pop(env.MLFLOW_TRACKING_URI, None)
        else:
            os.environ[env.MLFLOW_TRACKING_URI] = saved


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (env.PARENT_RUN_ID, env.PIPELINE_RUN_ID, env.MLFLOW_RUN_ID, env.MLFLOW_EXPERIMENT_NAME):
        monkeypatch.delenv(name, raising=False)


def test_stage_config_layers_preset_overrides_and_fixed_keys(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("model: base\nmax_steps: 4\nreward:\n  scorer: logprob\n  weight: 0.5\nname: from-preset\n")
    # KFP hands dict parameters over as protobuf Structs: every number a float.
    overrides = {"max_steps": 10.0, "learning_rate": 1e-6, "reward": {"weight": 2.0}}
    cfg = stage_config(Toy, str(preset), overrides, data="/art/d", name=None)
    assert cfg.max_steps == 10 and isinstance(cfg.max_steps, int)
    assert cfg.learning_rate == 1e-6
    assert cfg.reward == Inner(scorer="logprob", weight=2.0)
    assert cfg.data == "/art/d" and cfg.model == "base" and cfg.name == "from-preset"


def test_stage_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="unknown key 'lr' for Toy"):
        stage_config(Toy, None, {"lr": 1}, model="m")
    with pytest.raises(ConfigError, match="key 'max_steps'"):
        stage_config(Toy, None, {"max_steps": 2.5}, model="m")
    with pytest.raises(ConfigError, match="unknown preset 'no-such-preset'"):
        stage_config(Toy, "no-such-preset", None, model="m")


def test_workspace_dir_falls_back_outside_a_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env.WORKSPACE, str(tmp_path / "ws"))
    assert runtime.workspace_dir("{{$.workspace_path}}", "checkpoints", "grpo") == tmp_path / "ws/checkpoints/grpo"
    assert runtime.workspace_dir(str(tmp_path / "pvc"), "build") == tmp_path / "pvc/build"
    assert (tmp_path / "pvc/build").is_dir()


def test_parent_run_shared_through_the_workspace(store: str, tmp_path: Path, clean_env: None) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from thinkflow.tracking import stage_run

    ws = str(tmp_path / "workspace")
    # First task: creates the parent run (on the cluster no THINKFLOW_PARENT_RUN_ID is set).
    parent = tracking.open_parent_run(
        "vlaa-thinker",
        {"model": "s3://m", "grpo_overrides": {"learning_rate": 1e-6}, "gpus": 8.0},
        experiment="kfp-test",
        kfp_run_id="0b1e",
        kfp_run_name="vlaa-run",
        workspace=ws,
    )
    client = MlflowClient()
    run = client.get_run(parent)
    assert run.data.params == {"model": "s3://m", "grpo_overrides.learning_rate": "1e-06", "gpus": "8"}
    assert run.data.tags[tracking.TAG_KFP_RUN_ID] == "0b1e" and run.info.run_name == "vlaa-run"
    assert mlflow.get_experiment(run.info.experiment_id).name == "kfp-test"

    # A later task is another process: nothing in its environment but the workspace.
    os.environ.pop(env.PARENT_RUN_ID)
    assert tracking.attach_parent(ws) == parent
    assert os.environ[env.PIPELINE_RUN_ID] == "0b1e"

    def stage(cfg: Toy) -> StageResult:
        with stage_run("grpo", cfg.model_dump()) as active:
            mlflow.log_metric("reward", 0.5)
            run_id = active.info.run_id
            return StageResult(stage="grpo", output="/out/model", metrics={"reward": 0.5}, mlflow_run_id=run_id)

    os.environ.pop(env.PARENT_RUN_ID)
    result = runtime.run_stage(stage, Toy(model="m"), ws)
    child = client.get_run(result.mlflow_run_id or "")
    assert child.data.tags["mlflow.parentRunId"] == parent

    class FakeArtifact:
        def __init__(self) -> None:
            self.metadata: dict[str, Any] = {}
            self.uri = "s3://root/run/grpo/model"
            self.logged: dict[str, float] = {}

        def log_metric(self, key: str, value: float) -> None:
            self.logged[key] = value

    metrics, model = FakeArtifact(), FakeArtifact()
    runtime.record(result, metrics, model, label="sft_grpo")
    assert metrics.logged == {"reward": 0.5} and metrics.metadata == {}
    assert model.metadata == {
        "stage": "grpo", "output": "/out/model", "label": "sft_grpo", "mlflow_run_id": result.mlflow_run_id
    }
    summary = client.get_run(parent).data
    assert summary.metrics == {"sft_grpo/grpo.reward": 0.5}
    assert summary.tags["thinkflow.output.sft_grpo/grpo"] == "/out/model"
    assert summary.tags["thinkflow.output.sft_grpo/grpo.artifact"] == "s3://root/run/grpo/model"

    # A stage function that logs no run of its own still gets one under the parent.
    def silent(cfg: Toy) -> StageResult:
        return StageResult(stage="validate", output="/d", metrics={"bad": 0.0})

    quiet = runtime.run_stage(silent, Toy(model="m"))
    logged = client.get_run(quiet.mlflow_run_id or "")
    assert logged.data.tags["mlflow.parentRunId"] == parent and logged.data.metrics == {"bad": 0.0}
    assert logged.data.params["model"] == "m"

    # Exit handler: the pipeline's state becomes the run's status.
    os.environ.pop(env.PARENT_RUN_ID)
    assert tracking.close_parent_run("FAILED", "task grpo failed: OOM", workspace=ws) == parent
    closed = client.get_run(parent)
    assert closed.info.status == "FAILED"
    assert closed.data.tags[tracking.TAG_ERROR] == "task grpo failed: OOM"


def test_open_adopts_the_local_runners_parent(store: str, tmp_path: Path, clean_env: None) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.create_experiment("adopt")
    existing = client.create_run(exp).info.run_id
    os.environ[env.PARENT_RUN_ID] = existing
    assert tracking.open_parent_run("p", {"model": "m"}, workspace=str(tmp_path)) == existing
    assert (tmp_path / tracking.PARENT_FILE).read_text() == existing
    assert tracking.close_parent_run("SUCCEEDED", workspace=str(tmp_path)) == existing
    assert client.get_run(existing).info.status == "FINISHED"


def test_close_without_parent_is_a_warning(tmp_path: Path, clean_env: None) -> None:
    assert tracking.close_parent_run("FAILED", "boom", workspace=str(tmp_path)) is None


def test_check_recipes() -> None:
    check_recipes(None)
    check_recipes(["grpo", "sft_grpo"])
    with pytest.raises(ValueError, match="unknown recipe 'dpo'"):
        check_recipes(["grpo", "dpo"])
    with pytest.raises(ValueError, match="listed twice"):
        check_recipes(["sft", "sft"])
    with pytest.raises(ValueError, match="is empty"):
        check_recipes([])


def test_registered_tags_come_from_the_typed_registration() -> None:
    from thinkflow.registry import GateDecision, Registration

    decision = GateDecision("thinkflow-vlm", "3", True, "promoted", "no champion yet", "overall.mean_score", 0.4, None,
                            None, 0.0)  # fmt: skip
    reg = Registration(name="thinkflow-vlm", version="3", alias="champion", uri="models:/thinkflow-vlm/3",
                       created=True, content_hash="c" * 64, gate=decision)  # fmt: skip
    assert runtime.registered_tags(reg) == {
        "thinkflow.registered.name": "thinkflow-vlm",
        "thinkflow.registered.version": "3",
        "thinkflow.registered.alias": "champion",
        "thinkflow.registered.gate": "promoted",
        "thinkflow.registered.gate_reason": "no champion yet",
    }
    kept = reg.model_copy(update={"alias": "challenger", "gate": None})
    assert runtime.registered_tags(kept)["thinkflow.registered.alias"] == "challenger"
    assert "thinkflow.registered.gate" not in runtime.registered_tags(kept)


def test_with_eval_dataset() -> None:
    from thinkflow.evaluate import EvalConfig

    bench = EvalConfig(data=["mathvista=s3://b/mathvista"], limit=5)
    out = with_eval_dataset(bench, "/art/dataset")
    assert [(b.name, b.path, b.split) for b in out.data] == [
        ("mathvista", "s3://b/mathvista", None),
        ("dataset", "/art/dataset", "eval"),
    ]
    assert with_eval_dataset(EvalConfig(), "/art/dataset").data == "/art/dataset"
    assert with_eval_dataset(bench, None) is bench


def test_report_tags_point_at_the_evaluation_report() -> None:
    from thinkflow.evaluate.tasks import report_tags

    class Results:
        uri = "s3://root/run/evaluate/results"

    result = StageResult(stage="evaluate", output="/local/results")
    assert report_tags(result, Results(), "sft") == {
        "thinkflow.output.sft/evaluate.report": "s3://root/run/evaluate/results/report.md"
    }
    assert report_tags(result, None) == {"thinkflow.output.evaluate.report": "/local/results/report.md"}
