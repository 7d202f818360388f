"""Shared fixtures: one tiny model per test session, a real loopback S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep MLflow's default local store (and its artifacts) out of the working tree."""
    import os

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    if saved is None:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    yield
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL saved to disk (built offline, once per session)."""
    from thinkflow.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "qwen2.5-vl", family="qwen2.5-vl", seed=0)


@pytest.fixture
def s3() -> Iterator[str]:
    """A real S3 server (moto) on loopback; AWS_* env vars point at it for the test's duration."""
    from thinkflow.testing import s3_server

    with s3_server() as url:
        yield url


@pytest.fixture
def mlflow_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A sqlite tracking store (MLflow env vars point at it); its experiment keeps artifacts under tmp_path."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "train-tests")
    for name in ("THINKFLOW_PARENT_RUN_ID", "MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    artifacts = (tmp_path / "mlartifacts").as_uri()
    MlflowClient(tracking_uri=uri).create_experiment("train-tests", artifact_location=artifacts)
    yield uri


@pytest.fixture(scope="session")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite database with its schema, made once; `mlflow_local` copies it."""
    from eval_fixtures import mlflow_db_template

    return mlflow_db_template(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture
def mlflow_local(db_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow pointed at a fresh copy of the template in tmp_path (and the test run from there)."""
    from eval_fixtures import use_mlflow_db

    return use_mlflow_db(db_template, tmp_path, monkeypatch)
