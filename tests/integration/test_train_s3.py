"""Training from and to an object store: model and data on s3:// (a real S3 server on loopback), output uploaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkflow import storage
from thinkflow.config import load_config
from thinkflow.train.sft import SFTConfig, run


def test_sft_reads_model_and_data_from_s3_and_uploads_the_result(
    tiny_model: Path, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from thinkflow.data import manifest_hash
    from thinkflow.data.synthetic import generate
    from thinkflow.models.load import load
    from thinkflow.train.lineage import read_lineage

    monkeypatch.setenv("THINKFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("THINKFLOW_WORKSPACE", str(tmp_path / "workspace"))
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "train-s3")
    MlflowClient(tracking_uri=uri).create_experiment("train-s3", artifact_location=(tmp_path / "mlartifacts").as_uri())
    storage.upload(tiny_model, "s3://models/tiny")
    generate(str(tmp_path / "data"), 16, seed=3)
    storage.upload(tmp_path / "data", "s3://datasets/synthetic")

    cfg = load_config(
        SFTConfig,
        "tiny-sft",
        ["model=s3://models/tiny", "data=s3://datasets/synthetic", "output_dir=s3://runs/sft", "max_steps=1"],
    )
    result = run(cfg)
    assert result.output == "s3://runs/sft" and result.artifacts["lineage"] == "s3://runs/sft/lineage.json"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "lineage.json"):
        assert storage.exists(f"s3://runs/sft/{name}"), name
    assert not storage.exists("s3://runs/sft/checkpoints")  # checkpoints stay in the workspace
    workspaces = list((tmp_path / "workspace").glob("sft-*/checkpoint-1/trainer_state.json"))
    assert len(workspaces) == 1
    lineage = read_lineage("s3://runs/sft")
    assert lineage is not None and lineage["base_model"]["uri"] == "s3://models/tiny"
    assert lineage["dataset"]["uri"] == "s3://datasets/synthetic"
    assert lineage["dataset"]["manifest_hash"] == manifest_hash("s3://datasets/synthetic")
    model, processor = load("s3://runs/sft")
    assert hasattr(processor, "image_processor") and model.config.model_type == "qwen2_5_vl"
