"""TrainJob create + wait through the real kubernetes client, against a Kubernetes API server on loopback.

There is no cluster here, so the server is a small scripted implementation of the endpoints the launcher
uses (create, get, list + watch of ``trainer.kubeflow.org/v1alpha1`` trainjobs) speaking the Kubernetes REST
protocol: JSON bodies, ``Status`` errors, chunked watch streams with resource versions. Like the Trainer's
admission webhook it rejects TrainJobs the Trainer API models reject. Each created job then moves through a
scripted status sequence, the way the Trainer controller updates ``status``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from thinkflow.config import load_config
from thinkflow.testing import loopback_kube_api
from thinkflow.train.grpo import GRPOStageConfig
from thinkflow.train.relaunch import LaunchError
from thinkflow.train.trainjob import CHAIN_LABEL, render_trainjob
from thinkflow.train.trainjob_client import TrainJobFailed, create_trainjob, run_trainjob, wait_trainjob

PREFIX = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/"

CREATED = {"conditions": [{"type": "Created", "status": "True", "reason": "JobsCreated", "message": "created"}]}
RUNNING = {
    **CREATED,
    "jobsStatus": [{"name": "node", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}],
}
COMPLETE = {
    "conditions": [
        *CREATED["conditions"],
        {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "done"},
    ],
    "jobsStatus": [{"name": "node", "active": 0, "ready": 0, "succeeded": 2, "failed": 0, "suspended": 0}],
}
FAILED = {
    "conditions": [
        *CREATED["conditions"],
        {"type": "Failed", "status": "True", "reason": "JobsFailed", "message": "node-0-0 exited with code 1"},
    ],
    "jobsStatus": [{"name": "node", "active": 0, "ready": 0, "succeeded": 0, "failed": 1, "suspended": 0}],
}


class KubeAPI:
    """The scripted API server: ``scripts[name]`` is the status sequence a created job goes through."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.history: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.scripts: dict[str, list[dict[str, Any] | None]] = {}
        self.on_complete: dict[str, Any] = {}
        self.version = 0
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.deletes: list[tuple[str, str, str | None]] = []

    def advance(self, key: tuple[str, str]) -> None:
        """Apply the next scripted status (None: delete the job)."""
        script = self.scripts.get(key[1], [])
        with self.lock:
            if not script or key not in self.jobs:
                return
            status = script.pop(0)
            self.version += 1
            obj = self.jobs[key]
            if status is None:
                del self.jobs[key]
                self.history[key].append({"type": "DELETED", "object": obj, "rv": self.version})
                return
            obj = json.loads(json.dumps(obj))
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.jobs[key] = obj
            self.history[key].append({"type": "MODIFIED", "object": obj, "rv": self.version})
        if any(c["type"] == "Complete" for c in status.get("conditions", [])) and key[1] in self.on_complete:
            self.on_complete[key[1]]()


def _handler(api: KubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, code: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _status(self, code: int, reason: str, message: str) -> None:
            self._json(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                              "reason": reason, "code": code})  # fmt: skip

        def _route(self) -> tuple[str, str | None, dict[str, list[str]]]:
            url = urlparse(self.path)
            api.requests.append(f"{self.command} {url.path}")
            if not url.path.startswith(PREFIX):
                return "", None, {}
            rest = url.path[len(PREFIX) :].split("/")
            if len(rest) < 2 or rest[1] != "trainjobs":
                return "", None, {}
            return rest[0], rest[2] if len(rest) > 2 else None, parse_qs(url.query)

        def do_POST(self) -> None:
            from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

            namespace, _, _ = self._route()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                TrainerV1alpha1TrainJob.from_dict(body)
            except Exception as exc:
                self._status(422, "Invalid", f"TrainJob is invalid: {exc}")
                return
            key = (namespace, body["metadata"]["name"])
            with api.lock:
                if key in api.jobs:
                    self._status(409, "AlreadyExists", f'trainjobs.trainer.kubeflow.org "{key[1]}" already exists')
                    return
                api.version += 1
                body["metadata"].update(uid=f"uid-{api.version}", resourceVersion=str(api.version))
                api.jobs[key] = body
                api.history[key] = [{"type": "ADDED", "object": body, "rv": api.version}]
            self._json(201, body)

        def do_GET(self) -> None:
            namespace, name, query = self._route()
            if name is not None:
                obj = api.jobs.get((namespace, name))
                if obj is None:
                    self._status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
                else:
                    self._json(200, obj)
                return
            selector = query.get("fieldSelector", [""])[0]
            wanted = selector.removeprefix("metadata.name=")
            if query.get("watch", ["false"])[0] not in ("true", "True", "1"):
                items = [o for (ns, n), o in api.jobs.items() if ns == namespace and (not wanted or n == wanted)]
                self._json(200, {"kind": "TrainJobList", "items": items, "metadata": {"resourceVersion": "0"}})
                return
            since = int(query.get("resourceVersion", ["0"])[0] or 0)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            key = (namespace, wanted)
            api.advance(key)  # the controller moves on while the client watches
            deadline = time.monotonic() + 2.0
            sent = since
            while time.monotonic() < deadline:
                events = [e for e in api.history.get(key, []) if e["rv"] > sent]
                for event in events:
                    line = json.dumps({"type": event["type"], "object": event["object"]}).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                    sent = event["rv"]
                if events and events[-1]["type"] == "DELETED":
                    break
                time.sleep(0.05)
                api.advance(key)
            self.wfile.write(b"0\r\n\r\n")

        def do_DELETE(self) -> None:
            namespace, name, query = self._route()
            length = int(self.headers.get("Content-Length") or 0)
            options = json.loads(self.rfile.read(length)) if length else {}
            policy = query.get("propagationPolicy", [options.get("propagationPolicy")])[0]
            api.deletes.append((namespace, str(name), policy))
            key = (namespace, str(name))
            with api.lock:
                obj = api.jobs.pop(key, None)
                if obj is None:
                    self._status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found')
                    return
                api.version += 1
                api.history[key].append({"type": "DELETED", "object": obj, "rv": api.version})
            self._json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeAPI]:
    api = KubeAPI()
    with loopback_kube_api(_handler(api), tmp_path / "kubeconfig") as kubeconfig:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("THINKFLOW_PIPELINE_RUN_ID", raising=False)
        yield api


def _cfg(tmp_path: Path, name: str, *sets: str) -> GRPOStageConfig:
    return load_config(
        GRPOStageConfig,
        "tiny-grpo",
        [
            "launch.mode=trainjob",
            "launch.num_nodes=2",
            "launch.trainjob.namespace=ml",
            f"launch.trainjob.name={name}",
            "launch.trainjob.timeout_s=30",
            f"output_dir={tmp_path / 'out'}",
            *sets,
        ],
    )


def test_create_and_wait_streams_status_until_complete(kube: KubeAPI, tmp_path: Path) -> None:
    body = render_trainjob("grpo", _cfg(tmp_path, "grpo-ok"))
    kube.scripts["grpo-ok"] = [CREATED, RUNNING, RUNNING, COMPLETE]
    created = create_trainjob(body)
    assert created["metadata"]["uid"] and created["spec"] == body["spec"]
    seen: list[str] = []
    final = wait_trainjob("grpo-ok", "ml", timeout_s=30, on_status=seen.append)
    assert any(c["type"] == "Complete" for c in final["status"]["conditions"])
    assert seen == [
        "Pending",
        "Created(JobsCreated)",
        "Created(JobsCreated); node: active=2 ready=2 succeeded=0 failed=0",
        "Created(JobsCreated), Complete(JobsCompleted); node: active=0 ready=0 succeeded=2 failed=0",
    ]
    assert "POST /apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs" in kube.requests


def test_failed_job_fails_with_its_reason(kube: KubeAPI, tmp_path: Path) -> None:
    kube.scripts["grpo-bad"] = [CREATED, RUNNING, FAILED]
    create_trainjob(render_trainjob("grpo", _cfg(tmp_path, "grpo-bad")))
    with pytest.raises(TrainJobFailed, match=r"ml/grpo-bad failed: JobsFailed: node-0-0 exited with code 1"):
        wait_trainjob("grpo-bad", "ml", timeout_s=30)


def test_deleted_job_fails(kube: KubeAPI, tmp_path: Path) -> None:
    kube.scripts["grpo-gone"] = [CREATED, None]
    create_trainjob(render_trainjob("grpo", _cfg(tmp_path, "grpo-gone")))
    with pytest.raises(TrainJobFailed, match="deleted"):
        wait_trainjob("grpo-gone", "ml", timeout_s=30)


def test_create_errors_are_clear(kube: KubeAPI, tmp_path: Path) -> None:
    body = render_trainjob("grpo", _cfg(tmp_path, "grpo-twice"))
    create_trainjob(body)
    with pytest.raises(LaunchError, match=r"409 .*already exists"):
        create_trainjob(body)
    broken = json.loads(json.dumps(body))
    broken["metadata"]["name"] = "grpo-broken"
    broken["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(LaunchError, match=r"422 .*TrainJob is invalid"):
        create_trainjob(broken)


def test_wait_times_out(kube: KubeAPI, tmp_path: Path) -> None:
    kube.scripts["grpo-slow"] = [CREATED] + [RUNNING] * 200
    create_trainjob(render_trainjob("grpo", _cfg(tmp_path, "grpo-slow")))
    with pytest.raises(LaunchError, match="did not finish within 2s"):
        wait_trainjob("grpo-slow", "ml", timeout_s=2)


def test_run_trainjob_returns_the_jobs_result(kube: KubeAPI, tmp_path: Path) -> None:
    """``grpo.run`` with launch.mode=trainjob: create, wait, then read the result the job left beside the model."""
    from thinkflow.train.grpo import run

    cfg = _cfg(tmp_path, "grpo-e2e")
    out = Path(cfg.output_dir)

    def job_writes_model() -> None:  # what the training pods leave in output_dir (a shared PVC or s3://)
        out.mkdir(parents=True, exist_ok=True)
        lineage = {"stage": "grpo", "metrics": {"global_step": 4.0, "train_loss": 0.01}, "mlflow_run_id": "abc123"}
        (out / "lineage.json").write_text(json.dumps(lineage))

    kube.scripts["grpo-e2e"] = [CREATED, RUNNING, COMPLETE]
    kube.on_complete["grpo-e2e"] = job_writes_model
    result = run(cfg)
    assert result.stage == "grpo" and result.output == str(out)
    assert result.metrics == {"global_step": 4.0, "train_loss": 0.01}
    assert result.mlflow_run_id == "abc123"
    assert result.artifacts["trainjob"] == "ml/grpo-e2e"
    created = kube.history[("ml", "grpo-e2e")][0]["object"]
    assert created["spec"]["trainer"]["numNodes"] == 2


def test_run_trainjob_without_waiting(kube: KubeAPI, tmp_path: Path) -> None:
    result = run_trainjob("grpo", _cfg(tmp_path, "grpo-async", "launch.trainjob.wait=false"))
    assert result.artifacts == {"trainjob": "ml/grpo-async"} and result.metrics == {}
    assert ("ml", "grpo-async") in kube.jobs


def _task_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_id: str = "run-7f3a") -> GRPOStageConfig:
    """A training task of a KFP run: no configured name, the run id the components export."""
    monkeypatch.setenv("THINKFLOW_PIPELINE_RUN_ID", run_id)
    return load_config(
        GRPOStageConfig,
        "tiny-grpo",
        [
            "launch.mode=trainjob",
            "launch.trainjob.namespace=ml",
            "launch.trainjob.timeout_s=30",
            f"output_dir={tmp_path / 'out'}",
            f"checkpoint_dir={tmp_path / 'ckpt' / 'grpo-sft_grpo'}",
        ],
    )


def test_a_retried_task_reattaches_to_its_running_job(
    kube: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KFP retries a training task in a new pod; the TrainJob name is the same for every attempt, so the retry
    waits for the job the first attempt started instead of starting a second 2x8-GPU job."""
    cfg = _task_cfg(tmp_path, monkeypatch)
    first = render_trainjob("grpo", cfg)
    name = first["metadata"]["name"]
    assert re.fullmatch(r"thinkflow-grpo-[0-9a-f]{16}", name) and first["metadata"]["labels"][CHAIN_LABEL]
    assert render_trainjob("grpo", cfg)["metadata"]["name"] == name  # deterministic
    monkeypatch.setenv("THINKFLOW_PIPELINE_RUN_ID", "another-run")
    assert render_trainjob("grpo", cfg)["metadata"]["name"] != name  # per run
    monkeypatch.setenv("THINKFLOW_PIPELINE_RUN_ID", "run-7f3a")
    create_trainjob(first)  # attempt 1, whose pod then died
    kube.scripts[name] = [RUNNING, COMPLETE]
    result = run_trainjob("grpo", cfg)  # attempt 2
    assert result.artifacts == {"trainjob": f"ml/{name}"}
    assert kube.requests.count("POST /apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs") == 2
    assert len(kube.history[("ml", name)]) >= 3 and kube.history[("ml", name)][0]["type"] == "ADDED"
    assert kube.deletes == []


def test_a_retry_replaces_the_failed_job_of_an_earlier_attempt(
    kube: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _task_cfg(tmp_path, monkeypatch)
    body = render_trainjob("grpo", cfg)
    name = body["metadata"]["name"]
    create_trainjob(body)
    kube.jobs[("ml", name)]["status"] = FAILED
    kube.scripts[name] = [CREATED, COMPLETE]
    run_trainjob("grpo", cfg)
    assert kube.deletes == [("ml", name, "Background")]
    assert ("ml", name) in kube.jobs and kube.jobs[("ml", name)]["status"] == COMPLETE


def test_a_same_named_job_of_another_run_is_not_taken_over(
    kube: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _task_cfg(tmp_path, monkeypatch)
    body = render_trainjob("grpo", cfg)
    body["metadata"]["labels"][CHAIN_LABEL] = "someone-else"
    create_trainjob(body)
    with pytest.raises(LaunchError, match="belongs to another run"):
        run_trainjob("grpo", cfg)
    assert kube.deletes == []


def test_sigterm_deletes_the_job(kube: KubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KFP cancels a run by stopping the task's pod (SIGTERM): the TrainJob goes with it."""
    cfg = _task_cfg(tmp_path, monkeypatch)
    name = render_trainjob("grpo", cfg)["metadata"]["name"]
    kube.scripts[name] = [CREATED] + [RUNNING] * 400
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(SystemExit) as stopped:
            run_trainjob("grpo", cfg)
    finally:
        timer.cancel()
    assert stopped.value.code == 128 + signal.SIGTERM
    assert kube.deletes == [("ml", name, "Background")] and ("ml", name) not in kube.jobs
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_the_job_goes_to_the_pods_namespace_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a KFP pod the TrainJob is created in the pod's namespace (the chart's Role is there), not ``default``."""
    from thinkflow.train import trainjob

    cfg = load_config(GRPOStageConfig, "tiny-grpo", ["launch.mode=trainjob", f"output_dir={tmp_path / 'out'}"])
    monkeypatch.setattr(trainjob, "SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "missing"))
    assert render_trainjob("grpo", cfg)["metadata"]["namespace"] == "default"
    sa_ns = tmp_path / "namespace"
    sa_ns.write_text("kubeflow")
    monkeypatch.setattr(trainjob, "SERVICE_ACCOUNT_NAMESPACE", str(sa_ns))
    assert render_trainjob("grpo", cfg)["metadata"]["namespace"] == "kubeflow"
    pinned = load_config(GRPOStageConfig, "tiny-grpo", ["launch.mode=trainjob", "launch.trainjob.namespace=ml"])
    assert render_trainjob("grpo", pinned)["metadata"]["namespace"] == "ml"
