"""A training process killed with SIGKILL resumes, when started again, from its newest complete checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thinkflow.train.checkpoints import newest_complete


@pytest.mark.slow
def test_killed_grpo_run_resumes_where_it_stopped(tiny_model: Path, tmp_path: Path) -> None:
    from thinkflow.data.synthetic import generate

    generate(str(tmp_path / "data"), 32, seed=4)
    out = tmp_path / "grpo"
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).create_experiment("resume", artifact_location=(tmp_path / "mlartifacts").as_uri())
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_EXPERIMENT_NAME": "resume",
        "THINKFLOW_CACHE": str(tmp_path / "cache"),
    }
    for name in ("THINKFLOW_PARENT_RUN_ID", "MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_ID"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "thinkflow.cli", "grpo", "--config", "tiny-grpo",
        "--set", f"model={tiny_model}", "--set", f"data={tmp_path / 'data'}", "--set", f"output_dir={out}",
        "--set", f"reward.scorer_model={tiny_model}", "--set", "max_steps=8", "--set", "save_steps=2",
        "--set", "max_completion_length=8",
    ]  # fmt: skip
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        try:
            while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
                assert proc.poll() is None, f"training ended before its first checkpoint:\n{first_log.read_text()}"
                assert time.monotonic() < deadline, "no checkpoint within 600 s"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)  # the pod is killed: no cleanup, no final save
        finally:
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "lineage.json").exists()
    resume_from = newest_complete(out / "checkpoints")
    assert resume_from is not None
    step = int(resume_from.name.split("-")[1])
    assert 2 <= step < 8

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming from {resume_from} (global_step {step})" in second.stderr
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["global_step"] == 8 and lineage["resumed_from"] == str(resume_from)
    state = json.loads((out / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == list(range(1, 9))  # the history continues across the kill, no step twice
