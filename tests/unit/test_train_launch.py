"""Launching: config round trip through --set arguments, torchrun command, TrainJob rendering + validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from thinkflow.config import load_config
from thinkflow.train.grpo import GRPOStageConfig
from thinkflow.train.launch import torchrun_command
from thinkflow.train.relaunch import LaunchError, config_overrides, yaml_value
from thinkflow.train.sft import SFTConfig
from thinkflow.train.trainjob import render_trainjob, validate_trainjob
from thinkflow.train.trainjob_client import describe_status


def _sets(args: list[str]) -> list[str]:
    assert args[::2] == ["--set"] * (len(args) // 2)
    return args[1::2]


@pytest.mark.parametrize(
    "value", ["123", "1e-6", "true", "null", "a: b", "s3://b/k", "x=y", "", "it's", 3, 1e-6, None, [1, "2"], {"a": [1]}]
)
def test_yaml_value_round_trips(value: object) -> None:
    assert yaml.safe_load(yaml_value(value)) == value


def test_config_survives_the_launch_arguments() -> None:
    cfg = load_config(
        GRPOStageConfig,
        "qwen2.5-vl-7b-grpo",
        [
            "model=s3://models/7b",
            "output_dir=/runs/007",
            "reward.scorer=http",
            "reward.scorer_url=http://rm:8000/score",
            "trl_args={epsilon_high: 0.28, log_completions: true}",
            "lora.target_modules=[q_proj, v_proj]",
            "save_total_limit=null",
            "seed=123",
        ],
    )
    args = config_overrides(cfg)
    relaunched = load_config(GRPOStageConfig, None, _sets(args))
    assert relaunched.launch.mode == "process"  # the launched processes train in-process
    assert relaunched.model_dump(exclude={"launch"}) == cfg.model_dump(exclude={"launch"})


def test_torchrun_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PET_MASTER_ADDR", raising=False)
    cfg = load_config(SFTConfig, "tiny-sft", ["launch.mode=torchrun", "launch.nproc_per_node=4"])
    cmd = torchrun_command("sft", cfg)
    assert cmd[:4] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=4"]
    assert "--standalone" in cmd
    module = cmd.index("-m", 3)
    assert cmd[module : module + 3] == ["-m", "thinkflow.cli", "sft"]
    relaunched = load_config(SFTConfig, None, _sets(cmd[module + 3 :]))
    assert relaunched.model_dump(exclude={"launch"}) == cfg.model_dump(exclude={"launch"})


def _trainjob_cfg(*sets: str) -> GRPOStageConfig:
    return load_config(
        GRPOStageConfig,
        "qwen2.5-vl-7b-grpo",
        [
            "launch.trainjob.namespace=ml",
            "launch.trainjob.name=grpo-7b-run1",
            "launch.trainjob.image=ghcr.io/thinkflow/thinkflow-trainer:0.1.0",
            "launch.trainjob.cpu=32",
            "launch.trainjob.memory=256Gi",
            "launch.trainjob.workspace_pvc=grpo-workspace",
            "launch.trainjob.node_selector={nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}",
            "launch.trainjob.tolerations=[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]",
            "launch.trainjob.secret_env={AWS_SECRET_ACCESS_KEY: s3-credentials/secret-key}",
            "launch.trainjob.env={NCCL_DEBUG: WARN}",
            *sets,
        ],
    )


def test_trainjob_renders_and_validates_against_trainer_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    # outside a pipeline run (a component test in the same worker may have exported the run id): no chain label
    monkeypatch.delenv("THINKFLOW_PIPELINE_RUN_ID", raising=False)

    cfg = _trainjob_cfg()
    body = render_trainjob("grpo", cfg)
    model = TrainerV1alpha1TrainJob.from_dict(body)
    assert model is not None and model.spec is not None and model.spec.trainer is not None
    assert model.to_dict() == body  # nothing unknown to the Trainer API, nothing dropped
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["metadata"] == {
        "name": "grpo-7b-run1",
        "namespace": "ml",
        "labels": {"app.kubernetes.io/part-of": "thinkflow", "thinkflow.io/stage": "grpo"},
    }
    spec = body["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "thinkflow-torch-distributed",
    }
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": 8, "cpu": "32", "memory": "256Gi"}
    assert trainer["command"] == ["torchrun"]
    assert trainer["args"][:3] == ["-m", "thinkflow.cli", "grpo"]
    relaunched = load_config(GRPOStageConfig, None, _sets(trainer["args"][3:]))
    assert relaunched.launch.mode == "process"
    assert relaunched.model_dump(exclude={"launch"}) == cfg.model_dump(exclude={"launch"})
    env = {e["name"]: e for e in trainer["env"]}
    assert env["THINKFLOW_WORKSPACE"]["value"] == "/workspace"
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "secret-key"}},
    }
    assert env["NCCL_DEBUG"]["value"] == "WARN"
    (patch,) = spec["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]["spec"]
    assert job["name"] == "node"
    assert pod["volumes"] == [{"name": "workspace", "persistentVolumeClaim": {"claimName": "grpo-workspace"}}]
    assert pod["containers"] == [{"name": "node", "volumeMounts": [{"name": "workspace", "mountPath": "/workspace"}]}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_minimal_trainjob_has_no_patches() -> None:
    cfg = load_config(SFTConfig, "tiny-sft", ["launch.mode=trainjob", "launch.trainjob.gpus_per_node=0"])
    body = render_trainjob("sft", cfg, name="sft-cpu")
    assert "runtimePatches" not in body["spec"]
    assert "numProcPerNode" not in body["spec"]["trainer"] and "image" not in body["spec"]["trainer"]
    assert body["metadata"]["name"] == "sft-cpu"


def test_trainjob_generated_name_is_a_dns_label() -> None:
    cfg = load_config(SFTConfig, "tiny-sft")
    name = render_trainjob("sft", cfg)["metadata"]["name"]
    assert name.startswith("thinkflow-sft-") and name == name.lower()


def test_trainjob_config_errors() -> None:
    with pytest.raises(LaunchError, match="not a valid Kubernetes name"):
        render_trainjob("grpo", _trainjob_cfg("launch.trainjob.name=Bad_Name"))
    with pytest.raises(LaunchError, match=r"secret_env\.TOKEN"):
        render_trainjob("grpo", _trainjob_cfg("launch.trainjob.secret_env={TOKEN: no-key}"))


def test_validate_rejects_unknown_and_mistyped_fields() -> None:
    body = render_trainjob("grpo", _trainjob_cfg())
    unknown = json.loads(json.dumps(body))
    unknown["spec"]["trainer"]["numGpus"] = 8
    with pytest.raises(LaunchError, match=r"spec\.trainer\.numGpus"):
        validate_trainjob(unknown)
    mistyped = json.loads(json.dumps(body))
    mistyped["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(LaunchError, match="invalid TrainJob"):
        validate_trainjob(mistyped)
    no_runtime = json.loads(json.dumps(body))
    del no_runtime["spec"]["runtimeRef"]
    with pytest.raises(LaunchError, match="invalid TrainJob"):
        validate_trainjob(no_runtime)


def test_secret_values_never_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value")
    body = render_trainjob("grpo", _trainjob_cfg())
    assert "super-secret-value" not in json.dumps(body)


def test_describe_status() -> None:
    obj = {
        "status": {
            "conditions": [
                {"type": "Created", "status": "True", "reason": "JobsCreated"},
                {"type": "Suspended", "status": "False"},
            ],
            "jobsStatus": [{"name": "node", "active": 2, "ready": 1, "succeeded": 0, "failed": 0, "suspended": 0}],
        }
    }
    assert describe_status(obj) == "Created(JobsCreated); node: active=2 ready=1 succeeded=0 failed=0"
    assert describe_status({}) == "Pending"


def test_cli_print_config_and_clear_failures(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from thinkflow.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["grpo", "--config", "tiny-grpo", "--set", "beta=0.01", "--print-config"])
    assert shown.exit_code == 0 and "beta: 0.01" in shown.output and "rollout_batch_size: 4" in shown.output
    shown = runner.invoke(app, ["sft", "--config", "qwen2.5-vl-3b-sft", "--print-config"])
    assert shown.exit_code == 0 and "deepspeed: zero2" in shown.output
    bad_key = runner.invoke(app, ["sft", "--config", "tiny-sft", "--set", "learning_rat=1"])
    assert bad_key.exit_code == 2 and "learning_rat" in bad_key.output
    sets = ["--set", f"model={tmp_path / 'nope'}", "--set", f"output_dir={tmp_path / 'out'}"]
    missing = runner.invoke(app, ["sft", "--config", "tiny-sft", *sets])
    assert missing.exit_code == 1 and "error: model " in missing.output and "nope" in missing.output
    assert not (tmp_path / "out").exists()  # nothing created for a run that cannot start
