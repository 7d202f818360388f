"""Launching a training stage: in this process, on several GPUs of one machine, or on several nodes.

``launch.mode`` in the stage config picks how `thinkflow.train.sft.run` / `thinkflow.train.grpo.run` run:

- ``process`` (default): train in the calling process (one GPU, or CPU).
- ``torchrun``: start ``torchrun --nproc-per-node N -m thinkflow.cli <stage> --set …`` on this machine (one
  process per GPU of the pod; DeepSpeed ZeRO via the ``deepspeed`` key) and wait for it.
- ``trainjob``: render a Kubeflow Trainer ``TrainJob`` (torch-distributed runtime, ``launch.num_nodes``
  nodes × ``launch.trainjob.gpus_per_node`` GPUs), create it through the Kubernetes API, stream its status
  until it completes, and fail with the job's reason and message if it fails.

The launched processes get the same resolved config as ``--set key=value`` arguments (every key that
differs from its default, plus ``launch.mode=process``), so the TrainJob spec shows the full config.
With ``launch.trainjob.workspace_pvc`` the PVC is mounted at ``workspace_mount`` and becomes the
checkpoint workspace (``THINKFLOW_WORKSPACE``); for several nodes it must be ReadWriteMany, since every
rank writes its optimizer shards there. A job restarted by its JobSet resumes from that workspace.

The TrainJob is validated against the Kubeflow Trainer API models (``kubeflow-trainer-api``) before it
is sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from thinkflow import env as envs  # (`env` is the name of the processes' environments here)
from thinkflow import storage
from thinkflow.config import StageResult
from thinkflow.errors import ThinkFlowError

if TYPE_CHECKING:
    from thinkflow.train.common import TrainStageConfig

log = logging.getLogger("thinkflow.train")

TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"
TRAINJOB_PLURAL = "trainjobs"
DEFAULT_RUNTIME = "thinkflow-torch-distributed"  # the ClusterTrainingRuntime of charts/thinkflow
PATCH_MANAGER = "thinkflow.io/launcher"
NODE_JOB = "node"  # the replicated job / container name of the torch-distributed runtimes
LAUNCHED_ENV = envs.LAUNCHED


class LaunchError(ThinkFlowError, RuntimeError):
    """A launch that could not start, or a launched job that failed; the message says why."""


class TrainJobSettings(BaseModel):
    """How to run the stage as a Kubeflow Trainer TrainJob (``launch.mode: trainjob``)."""

    model_config = ConfigDict(extra="forbid")

    # None: the namespace of the pod this runs in (a KFP task: the pipelines namespace, where the chart's Role lets
    # pipeline-runner create TrainJobs), else "default"
    namespace: str | None = None
    name: str | None = None  # default: thinkflow-<stage>-<UTC timestamp>
    runtime: str = DEFAULT_RUNTIME
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    image: str | None = None  # None: the runtime's image
    gpus_per_node: int = Field(default=8, ge=0)
    gpu_resource: str = "nvidia.com/gpu"
    cpu: str | int | float | None = None  # Kubernetes quantities: 32, "500m", "256Gi"
    memory: str | int | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(default_factory=dict)  # ENV_NAME: "secret-name/key" (never the value itself)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    workspace_pvc: str | None = None
    workspace_mount: str = "/workspace"
    labels: dict[str, str] = Field(default_factory=dict)
    active_deadline_seconds: int | None = Field(default=None, gt=0)
    wait: bool = True
    timeout_s: float | None = Field(default=None, gt=0)  # None: wait until the job finishes


class LaunchSettings(BaseModel):
    """Where the stage runs: this process, torchrun on this machine, or a TrainJob on the cluster."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["process", "torchrun", "trainjob"] = "process"
    nproc_per_node: int | None = Field(default=None, gt=0)  # torchrun: default one process per visible GPU
    num_nodes: int = Field(default=1, gt=0)  # trainjob: training nodes
    trainjob: TrainJobSettings = Field(default_factory=TrainJobSettings)


# ------------------------------------------------------------------------------------------ arguments


def yaml_value(value: Any) -> str:
    """A value as one-line YAML that ``--set key=<text>`` parses back to the same value."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31 - 1, allow_unicode=True).rstrip("\n")
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    return text


def config_overrides(cfg: TrainStageConfig) -> list[str]:
    """``["--set", "key=value", …]`` reproducing ``cfg`` in a launched process (which trains in-process)."""
    data = cfg.model_dump(mode="json", exclude_defaults=True)
    data.pop("launch", None)
    args: list[str] = []
    for key, value in data.items():
        args += ["--set", f"{key}={yaml_value(value)}"]
    args += ["--set", "launch.mode=process"]
    return args


def visible_gpus() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def torchrun_command(stage: str, cfg: TrainStageConfig) -> list[str]:
    """The torchrun command line that runs ``stage`` with ``cfg`` on every GPU of this machine."""
    nproc = cfg.launch.nproc_per_node or visible_gpus() or 1
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if not (os.environ.get("PET_MASTER_ADDR") or os.environ.get("PET_RDZV_ENDPOINT")):
        cmd += ["--standalone", "--nnodes=1"]  # otherwise torchrun reads PET_* from the environment
    return [*cmd, "-m", "thinkflow.cli", stage, *config_overrides(cfg)]


def result_from_output(stage: str, cfg: TrainStageConfig, artifacts: dict[str, str] | None = None) -> StageResult:
    """The stage result of a launched run, read back from the ``lineage.json`` it wrote beside the model."""
    from thinkflow.train.lineage import read_lineage

    lineage = read_lineage(cfg.output_dir)
    if lineage is None:
        raise LaunchError(f"{stage}: the launched run finished but {cfg.output_dir} has no lineage.json")
    metrics = {k: float(v) for k, v in (lineage.get("metrics") or {}).items() if isinstance(v, int | float)}
    return StageResult(
        stage=stage,
        output=cfg.output_dir,
        metrics=metrics,
        artifacts={"lineage": storage.join(cfg.output_dir, "lineage.json"), **(artifacts or {})},
        mlflow_run_id=lineage.get("mlflow_run_id"),
    )


def run_torchrun(stage: str, cfg: TrainStageConfig) -> StageResult:
    """Run the stage under torchrun on this machine and wait; its output goes to this process's stdout/err."""
    cmd = torchrun_command(stage, cfg)
    log.info("launching: %s", " ".join(cmd))
    env = {**os.environ, LAUNCHED_ENV: "torchrun"}
    proc = subprocess.run(cmd, env=env, check=False)
    if proc.returncode != 0:
        raise LaunchError(f"{stage}: torchrun exited with code {proc.returncode}")
    return result_from_output(stage, cfg)


# ------------------------------------------------------------------------------------------- TrainJob


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
    run_id = os.environ.get(envs.PIPELINE_RUN_ID)
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
    env: list[dict[str, Any]] = [{"name": LAUNCHED_ENV, "value": "trainjob"}]
    if settings.workspace_pvc:
        env.append({"name": envs.WORKSPACE, "value": settings.workspace_mount})
    for name in (envs.PARENT_RUN_ID, envs.MLFLOW_EXPERIMENT_NAME, envs.GIT_SHA):
        if os.environ.get(name) and name not in settings.env:
            env.append({"name": name, "value": os.environ[name]})
    env += [{"name": k, "value": v} for k, v in sorted(settings.env.items())]
    for name, ref in sorted(settings.secret_env.items()):
        secret, sep, key = ref.partition("/")
        if not sep or not secret or not key:
            raise LaunchError(f"launch.trainjob.secret_env.{name}: expected 'secret-name/key', got {ref!r}")
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


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


def kube_api_client() -> Any:
    """An API client from the in-cluster service account, else from ``KUBECONFIG`` / ``~/.kube/config``."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        # KUBECONFIG read now (the kubernetes package reads it once, at import)
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        try:
            config.load_kube_config(config_file=path, client_configuration=configuration)
        except (config.ConfigException, OSError) as exc:
            raise LaunchError(f"no Kubernetes credentials (in-cluster or kubeconfig {path}): {exc}") from None
    return client.ApiClient(configuration)


def create_trainjob(body: dict[str, Any], *, api_client: Any = None) -> dict[str, Any]:
    """Create the TrainJob through the Kubernetes API; returns the object the API server stored."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client or kube_api_client())
    namespace = body["metadata"]["namespace"]
    try:
        created: dict[str, Any] = api.create_namespaced_custom_object(
            TRAINER_GROUP, TRAINER_VERSION, namespace, TRAINJOB_PLURAL, body
        )
    except ApiException as exc:
        raise LaunchError(
            f"cannot create TrainJob {namespace}/{body['metadata']['name']}: {exc.status} {exc.reason}: "
            f"{_api_message(exc)}"
        ) from None
    log.info("created TrainJob %s/%s", namespace, body["metadata"]["name"])
    return created


def delete_trainjob(name: str, namespace: str, *, api_client: Any = None) -> bool:
    """Delete the TrainJob and, in the background, the Jobs and pods it owns. False if it was already gone."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client or kube_api_client())
    try:
        api.delete_namespaced_custom_object(
            TRAINER_GROUP, TRAINER_VERSION, namespace, TRAINJOB_PLURAL, name, propagation_policy="Background"
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise LaunchError(f"cannot delete TrainJob {namespace}/{name}: {exc.status} {exc.reason}") from None
    log.info("deleted TrainJob %s/%s", namespace, name)
    return True


def create_or_attach(body: dict[str, Any], *, api_client: Any = None) -> dict[str, Any]:
    """Create the TrainJob; if a job of the same attempt chain exists (a retried pipeline task), attach to it
    while it runs or has completed, or replace it when it failed (the new one resumes from the checkpoints).
    A same-named job of another chain (or none) is an error, as before."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    chain = body["metadata"].get("labels", {}).get(CHAIN_LABEL)
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    api_client = api_client or kube_api_client()
    try:
        return create_trainjob(body, api_client=api_client)
    except LaunchError as exc:
        if not chain or " 409 " not in f" {exc} ":
            raise
    api = client.CustomObjectsApi(api_client)
    try:
        existing: dict[str, Any] = api.get_namespaced_custom_object(
            TRAINER_GROUP, TRAINER_VERSION, namespace, TRAINJOB_PLURAL, name
        )
    except ApiException as exc:
        raise LaunchError(f"cannot read TrainJob {namespace}/{name}: {exc.status} {exc.reason}") from None
    if existing.get("metadata", {}).get("labels", {}).get(CHAIN_LABEL) != chain:
        raise LaunchError(f"TrainJob {namespace}/{name} exists and belongs to another run; delete it or set a name")
    if _condition(existing, "Failed") is None:
        log.info("re-attaching to TrainJob %s/%s (an earlier attempt of this task created it)", namespace, name)
        return existing
    log.info("TrainJob %s/%s of an earlier attempt failed: replacing it", namespace, name)
    delete_trainjob(name, namespace, api_client=api_client)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            return create_trainjob(body, api_client=api_client)
        except LaunchError as exc:
            if " 409 " not in f" {exc} ":
                raise
            time.sleep(1)  # finalizers still running
    raise LaunchError(f"TrainJob {namespace}/{name} of a failed attempt was not deleted within 120s")


@contextlib.contextmanager
def deleted_on_termination(name: str, namespace: str, *, api_client: Any = None) -> Iterator[None]:
    """While the body runs, SIGTERM (KFP cancelling the run, Kubernetes stopping the pod) and Ctrl-C delete the
    TrainJob before the process exits, so no multi-node GPU job is left running. Signal handlers can only be set
    from the main thread; elsewhere the job is deleted on KeyboardInterrupt only."""
    previous = None
    in_main = threading.current_thread() is threading.main_thread()

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    if in_main:
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except (_Terminated, KeyboardInterrupt) as exc:
        log.warning("stopping: deleting TrainJob %s/%s", namespace, name)
        delete_trainjob(name, namespace, api_client=api_client)
        if isinstance(exc, _Terminated):
            raise SystemExit(128 + exc.signum) from None
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message", exc.body))
    except (TypeError, ValueError, AttributeError):
        return str(exc.body)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def describe_status(obj: dict[str, Any]) -> str:
    """A one-line summary of a TrainJob's status: its true conditions and its child jobs' pod counts."""
    status = obj.get("status") or {}
    conditions = [
        f"{c.get('type')}" + (f"({c.get('reason')})" if c.get("reason") else "")
        for c in status.get("conditions") or []
        if c.get("status") == "True"
    ]
    jobs = [
        f"{j.get('name')}: active={j.get('active', 0)} ready={j.get('ready', 0)} "
        f"succeeded={j.get('succeeded', 0)} failed={j.get('failed', 0)}"
        for j in status.get("jobsStatus") or []
    ]
    return "; ".join(filter(None, [", ".join(conditions) or "Pending", *jobs]))


class TrainJobFailed(LaunchError):
    """The TrainJob reached the Failed condition (or was deleted while waiting)."""


def wait_trainjob(
    name: str,
    namespace: str,
    *,
    api_client: Any = None,
    timeout_s: float | None = None,
    on_status: Any = None,
) -> dict[str, Any]:
    """Watch a TrainJob until it completes; return it. Streams each status change to the log (and ``on_status``).

    Raises `TrainJobFailed` with the job's reason and message when it fails or is deleted, `LaunchError`
    on timeout.
    """
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client or kube_api_client())
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None

    def report(obj: dict[str, Any]) -> None:
        nonlocal last
        line = describe_status(obj)
        if line != last:
            last = line
            log.info("TrainJob %s/%s: %s", namespace, name, line)
            if on_status is not None:
                on_status(line)

    def check(obj: dict[str, Any]) -> bool:
        report(obj)
        failed = _condition(obj, "Failed")
        if failed:
            raise TrainJobFailed(
                f"TrainJob {namespace}/{name} failed: {failed.get('reason', 'Failed')}: {failed.get('message', '')}"
            )
        return _condition(obj, "Complete") is not None

    while True:
        try:
            obj = api.get_namespaced_custom_object(TRAINER_GROUP, TRAINER_VERSION, namespace, TRAINJOB_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                raise TrainJobFailed(f"TrainJob {namespace}/{name} no longer exists (deleted while waiting)") from None
            raise LaunchError(f"cannot read TrainJob {namespace}/{name}: {exc.status} {exc.reason}") from None
        if check(obj):
            return obj
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise LaunchError(f"TrainJob {namespace}/{name} did not finish within {timeout_s:.0f}s ({last})")
        stream = watch.Watch()
        window = int(max(1, min(60, remaining if remaining is not None else 60)))
        try:
            for event in stream.stream(
                api.list_namespaced_custom_object,
                TRAINER_GROUP,
                TRAINER_VERSION,
                namespace,
                TRAINJOB_PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
                timeout_seconds=window,
            ):
                if event.get("type") == "DELETED":
                    raise TrainJobFailed(f"TrainJob {namespace}/{name} was deleted while waiting")
                if event.get("type") in {"ADDED", "MODIFIED"} and check(event["object"]):
                    stream.stop()
                    return dict(event["object"])
        except ApiException as exc:
            if exc.status != 410:  # 410 Gone: the resource version expired; read again and re-watch
                raise LaunchError(f"cannot watch TrainJob {namespace}/{name}: {exc.status} {exc.reason}") from None
        finally:
            stream.stop()


def run_trainjob(stage: str, cfg: TrainStageConfig, *, api_client: Any = None) -> StageResult:
    """Render, create and (unless ``launch.trainjob.wait`` is false) wait for the stage's TrainJob."""
    settings = cfg.launch.trainjob
    body = render_trainjob(stage, cfg)
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    api_client = api_client or kube_api_client()
    create_or_attach(body, api_client=api_client)
    artifacts = {"trainjob": f"{namespace}/{name}"}
    if not settings.wait:
        return StageResult(stage=stage, output=cfg.output_dir, artifacts=artifacts)
    with deleted_on_termination(name, namespace, api_client=api_client):
        wait_trainjob(name, namespace, api_client=api_client, timeout_s=settings.timeout_s)
    if storage.is_remote(cfg.output_dir) or os.path.exists(cfg.output_dir):
        return result_from_output(stage, cfg, artifacts)
    log.warning("%s is not reachable from here; the result carries no metrics", cfg.output_dir)
    return StageResult(stage=stage, output=cfg.output_dir, artifacts=artifacts)


def launch(stage: str, cfg: TrainStageConfig) -> StageResult:
    """Run ``stage`` as ``cfg.launch.mode`` says (``process`` mode is handled by the stage itself)."""
    mode = cfg.launch.mode
    if mode == "torchrun":
        if not _has_torch_run():
            raise LaunchError("launch.mode=torchrun: torch.distributed.run is not available")
        return run_torchrun(stage, cfg)
    if mode == "trainjob":
        return run_trainjob(stage, cfg)
    raise LaunchError(f"launch.mode={mode!r}: nothing to launch (the stage trains in this process)")


def _has_torch_run() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch.distributed.run") is not None
