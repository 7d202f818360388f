"""The Kubeflow Trainer ``TrainJob`` of a stage (``launch.mode: trainjob``): its name, environment, resources
and pod patch, rendered as a manifest and validated against the Kubeflow Trainer API models
(``kubeflow-trainer-api``) before it is sent (`thinkflow.train.trainjob_client` sends and watches it)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

from thinkflow import env, storage
from thinkflow.train.config import TrainJobSettings, TrainStageConfig
from thinkflow.train.relaunch import LaunchError, config_overrides

log = logging.getLogger("thinkflow.train")

TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"
TRAINJOB_PLURAL = "trainjobs"
PATCH_MANAGER = "thinkflow.io/launcher"
NODE_JOB = "node"  # the replicated job / container name of the torch-distributed runtimes

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def trainjob_namespace(settings: TrainJobSettings) -> str:
    """``launch.trainjob.namespace``, else this pod's namespace (its service account's), else ``default``."""
    if settings.namespace:
        return settings.namespace
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


CHAIN_LABEL = "thinkflow.io/attempt-chain"


def attempt_chain(stage: str, cfg: TrainStageConfig) -> str | None:
    """A key shared by every attempt of one pipeline task (KFP retries a failed training task in a new pod):
    the KFP run id, the stage and its checkpoint directory (per task: ``checkpoints/grpo-<label>``). None
    outside a pipeline run."""
    run_id = os.environ.get(env.PIPELINE_RUN_ID)
    if not run_id:
        return None
    key = f"{run_id}\n{trainjob_namespace(cfg.launch.trainjob)}\n{stage}\n{cfg.checkpoint_dir or cfg.output_dir}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def trainjob_name(stage: str, settings: TrainJobSettings, chain: str | None = None) -> str:
    """The TrainJob name: the configured one; in a pipeline run ``thinkflow-<stage>-<attempt chain>``, the same
    for every retry of the task (a retry re-attaches to the job instead of starting a second one); otherwise
    ``thinkflow-<stage>-<UTC time>``. Always a valid DNS label."""
    suffix = chain or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = settings.name or f"thinkflow-{stage}-{suffix}"
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise LaunchError(f"launch.trainjob.name: {name!r} is not a valid Kubernetes name (lowercase DNS label)")
    return name


def _env_list(settings: TrainJobSettings, stage: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": env.LAUNCHED, "value": "trainjob"}]
    if settings.workspace_pvc:
        out.append({"name": env.WORKSPACE, "value": settings.workspace_mount})
    for name in (env.PARENT_RUN_ID, env.MLFLOW_EXPERIMENT_NAME, env.GIT_SHA):
        if os.environ.get(name) and name not in settings.env:
            out.append({"name": name, "value": os.environ[name]})
    out += [{"name": k, "value": v} for k, v in sorted(settings.env.items())]
    for name, ref in sorted(settings.secret_env.items()):
        secret, sep, key = ref.partition("/")
        if not sep or not secret or not key:
            raise LaunchError(f"launch.trainjob.secret_env.{name}: expected 'secret-name/key', got {ref!r}")
        out.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return out


def _resources(settings: TrainJobSettings) -> dict[str, Any]:
    amounts: dict[str, Any] = {}
    if settings.gpus_per_node:
        amounts[settings.gpu_resource] = settings.gpus_per_node
    if settings.cpu:
        amounts["cpu"] = str(settings.cpu)
    if settings.memory:
        amounts["memory"] = str(settings.memory)
    return {"limits": dict(amounts), "requests": dict(amounts)}


def _pod_patch(settings: TrainJobSettings) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.workspace_pvc:
        spec["volumes"] = [{"name": "workspace", "persistentVolumeClaim": {"claimName": settings.workspace_pvc}}]
        spec["containers"] = [
            {"name": NODE_JOB, "volumeMounts": [{"name": "workspace", "mountPath": settings.workspace_mount}]}
        ]
    return spec


def render_trainjob(stage: str, cfg: TrainStageConfig, *, name: str | None = None) -> dict[str, Any]:
    """The TrainJob manifest (a dict, as ``kubectl apply`` takes it) that runs ``stage`` with ``cfg``."""
    settings = cfg.launch.trainjob
    chain = attempt_chain(stage, cfg)
    job_name = name or trainjob_name(stage, settings, chain)
    if cfg.checkpoint_dir is None and not settings.workspace_pvc and storage.is_remote(cfg.output_dir):
        log.warning(
            "launch.trainjob: no workspace_pvc; checkpoints go to the pods' ephemeral disk and a restarted "
            "job starts over"
        )
    trainer: dict[str, Any] = {
        "numNodes": cfg.launch.num_nodes,
        "command": ["torchrun"],
        "args": ["-m", "thinkflow.cli", stage, *config_overrides(cfg)],
        "env": _env_list(settings, stage),
        "resourcesPerNode": _resources(settings),
    }
    if settings.gpus_per_node:
        trainer["numProcPerNode"] = settings.gpus_per_node
    if settings.image:
        trainer["image"] = settings.image
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": TRAINER_GROUP, "kind": settings.runtime_kind, "name": settings.runtime},
        "trainer": trainer,
    }
    if settings.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    pod_patch = _pod_patch(settings)
    if pod_patch:
        spec["runtimePatches"] = [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {"name": NODE_JOB, "template": {"spec": {"template": {"spec": pod_patch}}}}
                            ]
                        }
                    }
                },
            }
        ]
    labels = {"app.kubernetes.io/part-of": "thinkflow", "thinkflow.io/stage": stage, **settings.labels}
    if chain:
        labels[CHAIN_LABEL] = chain
    body = {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": job_name, "namespace": trainjob_namespace(settings), "labels": labels},
        "spec": spec,
    }
    validate_trainjob(body)
    return body


def validate_trainjob(body: dict[str, Any]) -> None:
    """Check a TrainJob manifest against the Kubeflow Trainer API models: every field known and well typed."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
    from pydantic import ValidationError

    try:
        model = TrainerV1alpha1TrainJob.from_dict(body)
    except (ValidationError, ValueError) as exc:
        raise LaunchError(f"invalid TrainJob: {exc}") from None
    if model is None:
        raise LaunchError("invalid TrainJob: empty manifest")
    echoed = model.to_dict()
    dropped = _dropped_paths(body, echoed)
    if dropped:
        raise LaunchError(f"invalid TrainJob: unknown field(s) {', '.join(dropped)}")


def _dropped_paths(sent: Any, echoed: Any, path: str = "") -> list[str]:
    """Paths present in ``sent`` but missing from the model's echo (fields the API does not know)."""
    if isinstance(sent, dict):
        if not isinstance(echoed, dict):
            return [path or "."]
        out = []
        for key, value in sent.items():
            sub = f"{path}.{key}" if path else key
            if key not in echoed:
                out.append(sub)
            else:
                out += _dropped_paths(value, echoed[key], sub)
        return out
    if isinstance(sent, list) and isinstance(echoed, list):
        pairs = enumerate(zip(sent, echoed, strict=False))
        return [p for i, (a, b) in pairs for p in _dropped_paths(a, b, f"{path}[{i}]")]
    return []
