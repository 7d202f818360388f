"""Several processes in one pod: ``launch.mode=torchrun`` starts torchrun (2 CPU processes, gloo here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkflow.config import load_config
from thinkflow.train.grpo import GRPOStageConfig, run


@pytest.mark.slow
def test_torchrun_launch_trains_with_two_processes(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from transformers import AutoModelForImageTextToText

    from thinkflow.data.synthetic import generate

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "torchrun-test")
    MlflowClient(tracking_uri=uri).create_experiment("torchrun-test", artifact_location=(tmp_path / "mlart").as_uri())
    for name in ("THINKFLOW_PARENT_RUN_ID", "MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_ID", "PET_MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    generate(str(tmp_path / "data"), 32, seed=5)
    out = tmp_path / "grpo"
    cfg = load_config(
        GRPOStageConfig,
        "tiny-grpo",
        [
            f"model={tiny_model}",
            f"data={tmp_path / 'data'}",
            f"output_dir={out}",
            f"reward.scorer_model={tiny_model}",
            "max_steps=2",
            "max_completion_length=8",
            "dynamic_sampling=true",
            "launch.mode=torchrun",
            "launch.nproc_per_node=2",
        ],
    )
    result = run(cfg)  # returns once torchrun exits; the result is read back from the lineage
    assert result.metrics["global_step"] == 2 and result.output == str(out)
    AutoModelForImageTextToText.from_pretrained(out)
    from thinkflow.train.lineage import read_lineage

    lineage = read_lineage(out)
    assert lineage is not None and lineage["batch_plan"]["world_size"] == 2
    # 4 prompts x 4 generations per rollout over 2 processes: 8 completions each, 1 micro-batch of 4 per step
    assert lineage["batch_plan"]["gradient_accumulation_steps"] == 1
    client = MlflowClient()
    experiment = client.get_experiment_by_name("torchrun-test")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [result.mlflow_run_id]  # one stage run, from rank 0 only
    assert "dynamic_sampling/rounds" in runs[0].data.metrics
