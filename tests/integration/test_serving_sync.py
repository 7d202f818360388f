"""Serving the champion, end to end: a real ``mlflow server`` (artifacts proxied to a loopback S3), the project's
OpenAI-compatible server standing in for vLLM, and a scripted Kubernetes API for the Deployment.

No kubelet runs here, so the test plays its part explicitly (`Kubelet`): when the Deployment's pod-template
annotation ``thinkflow.io/model-version`` changes (and the Deployment is not paused), it does what a new pod
does: runs ``serve-init`` pinned to that version (the init container; the chart passes the annotation through
the downward API), restarts the stand-in server on the staged weights with ``--version-file``, and reports the
rollout complete in ``status``, as the Deployment controller would once the new pod is ready.

The good versions are the tiny Qwen2.5-VL trained briefly (a few seconds of AdamW on the smoke request
itself) until greedy decoding answers ``<think>…</think><answer>3</answer>``: a real model served by the real
server, not a scripted reply. The failing version is the tiny random model, which does not answer in the format.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_registry_mlflow_server import MlflowServer

from thinkflow.serving.resolve import ServeInitConfig, serve_init
from thinkflow.serving.smoke import smoke_request
from thinkflow.serving.sync import (
    FAILED_TAG,
    SERVED_ANNOTATION,
    SERVED_AT_TAG,
    VERSION_ANNOTATION,
    Kube,
    ServingFailed,
    SyncConfig,
    WatchTarget,
    run,
    served_history,
    wait_serving,
)
from thinkflow.testing import free_port, loopback_kube_api, s3_server, wait_http

NAME = "served-vlm"
NS = "ml"
DEPLOYMENT = "thinkflow-serving-champion"
GOOD_ANSWER = "<think>I count the red circles.</think><answer>3</answer>"


def train_to_answer(base: Path, out: Path, answer: str, steps: int = 80) -> Path:
    """Copy the tiny model to ``out`` and fit it (AdamW, a few seconds) to answer the smoke request with ``answer``."""
    import torch

    from thinkflow.models.load import load
    from thinkflow.records import SYSTEM_PROMPT
    from thinkflow.serving.smoke import SMOKE_QUESTION, smoke_image

    model, processor = load(base, device="cpu", dtype="float32")
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": SYSTEM_PROMPT}],
        },
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": SMOKE_QUESTION}]},
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = smoke_image()
    enc = processor(text=[prompt + answer + "<|im_end|>"], images=[image], return_tensors="pt")
    prompt_len = processor(text=[prompt], images=[image], return_tensors="pt")["input_ids"].shape[1]
    labels = enc["input_ids"].clone()
    labels[:, :prompt_len] = -100
    torch.manual_seed(0)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# --- a scripted Kubernetes API for one Deployment -------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``test`` / ``add`` / ``replace`` / ``remove`` (what serve-sync sends); ValueError when one fails."""
    out = json.loads(json.dumps(doc))
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = out
        for key in parents:
            if not isinstance(node, dict) or key not in node:
                raise ValueError(f"path {op['path']}: {key} does not exist")
            node = node[key]
        if op["op"] == "test":
            if node.get(last) != op["value"]:
                raise ValueError(f"test failed at {op['path']}: {node.get(last)!r} != {op['value']!r}")
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace" and last not in node:
                raise ValueError(f"replace: {op['path']} does not exist")
            node[last] = op["value"]
        elif op["op"] == "remove":
            del node[last]
        else:
            raise ValueError(f"unsupported op {op['op']}")
    return out


class DeploymentAPI:
    """``GET`` / ``PATCH`` of ``apps/v1`` deployments, with resourceVersion and generation like the API server."""

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.version = 0

    def add(self, namespace: str, name: str) -> None:
        self.version += 1
        self.deployments[(namespace, name)] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "generation": 1, "resourceVersion": str(self.version)},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"annotations": {VERSION_ANNOTATION: ""}}, "spec": {}},
            },
            "status": {},
        }

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self.deployments[(namespace, name)]))

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        with self.lock:
            obj = self.deployments[(namespace, name)]
            self.version += 1
            obj["status"] = {**status, "observedGeneration": obj["metadata"]["generation"]}
            obj["metadata"]["resourceVersion"] = str(self.version)

    def patch(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            obj = self.deployments[(namespace, name)]
            new = json_patch(obj, ops)
            if new["spec"] != obj["spec"]:
                new["metadata"]["generation"] = obj["metadata"]["generation"] + 1
            self.version += 1
            new["metadata"]["resourceVersion"] = str(self.version)
            self.deployments[(namespace, name)] = new
            return json.loads(json.dumps(new))


def _handler(api: DeploymentAPI) -> type[BaseHTTPRequestHandler]:
    prefix = "/apis/apps/v1/namespaces/"

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

        def _key(self) -> tuple[str, str] | None:
            api.requests.append(f"{self.command} {self.path}")
            rest = self.path.split("?", 1)[0].removeprefix(prefix).split("/")
            if not self.path.startswith(prefix) or len(rest) != 3 or rest[1] != "deployments":
                return None
            return rest[0], rest[2]

        def do_GET(self) -> None:
            key = self._key()
            if key is None or key not in api.deployments:
                self._status(404, "NotFound", f"deployments.apps {self.path} not found")
                return
            self._json(200, api.get(*key))

        def do_PATCH(self) -> None:
            key = self._key()
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if key is None or key not in api.deployments:
                self._status(404, "NotFound", f"deployments.apps {self.path} not found")
                return
            if self.headers["Content-Type"] != "application/json-patch+json" or not isinstance(body, list):
                self._status(415, "UnsupportedMediaType", f"expected a JSON patch, got {self.headers['Content-Type']}")
                return
            try:
                self._json(200, api.patch(*key, body))
            except ValueError as exc:  # a failed "test" op is a conflict, like the API server answers it
                self._status(409 if "test failed" in str(exc) else 422, "Conflict", str(exc))

    return Handler


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeploymentAPI]:
    api = DeploymentAPI()
    with loopback_kube_api(_handler(api), tmp_path / "kubeconfig", user="serve-sync") as kubeconfig:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield api


# --- the stand-in for vLLM and the kubelet ----------------------------------------------------------------------


class StandIn:
    """``thinkflow serve-model`` on a fixed port (the Service), restarted on new weights like a new pod."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/v1"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, served_dir: Path) -> None:
        self.stop()
        cmd = [
            *(sys.executable, "-m", "thinkflow.cli", "serve-model", str(served_dir / "current")),
            *("--port", str(self.port), "--device", "cpu", "--version-file", str(served_dir / "served.json")),
        ]
        self.proc = subprocess.Popen(cmd)
        wait_http(f"http://127.0.0.1:{self.port}/health", timeout=180, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Kubelet:
    """Plays the kubelet and the Deployment controller for one single-replica Deployment (see the module doc)."""

    def __init__(self, api: DeploymentAPI, server: StandIn, workdir: Path) -> None:
        self.api, self.server, self.workdir = api, server, workdir
        self.running: str | None = None
        self.started: list[str] = []
        self.errors: list[BaseException] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.step()
            except BaseException as exc:  # surfaced by the test
                logging.getLogger(__name__).exception("kubelet stand-in failed")
                self.errors.append(exc)
                return
            self.stop_event.wait(0.1)

    def step(self) -> None:
        dep = self.api.get(NS, DEPLOYMENT)
        if dep["spec"].get("paused"):
            return  # a paused Deployment does not roll
        version = dep["spec"]["template"]["metadata"]["annotations"].get(VERSION_ANNOTATION) or None
        if version == self.running and dep["status"].get("observedGeneration") == dep["metadata"]["generation"]:
            return
        if version != self.running:
            pod = self.workdir / f"pod-{len(self.started)}"  # a new pod: fresh emptyDir, shared cache PVC
            serve_init(
                ServeInitConfig(
                    model=f"models:/{NAME}@champion",
                    version=version,
                    cache_dir=str(self.workdir / "cache"),
                    output_dir=str(pod),
                )
            )
            self.server.start(pod)
            self.running = version
            self.started.append(str(version))
        self.api.set_status(NS, DEPLOYMENT, {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                                             "availableReplicas": 1})  # fmt: skip

    def __enter__(self) -> Kubelet:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)
        self.server.stop()


# --- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[tuple[MlflowServer, dict[str, str]]]:
    """The mlflow server with three versions of NAME: 1 and 2 answer well formed, 3 (random weights) does not."""
    from thinkflow.registry import RegisterConfig, register

    workdir = tmp_path_factory.mktemp("serving")
    good = train_to_answer(tiny_model, workdir / "good-1", GOOD_ANSWER)
    second = workdir / "good-2"
    shutil.copytree(good, second)
    cfg = json.loads((second / "generation_config.json").read_text())
    cfg["max_new_tokens"] = 64  # another build of the good model (a new content hash)
    (second / "generation_config.json").write_text(json.dumps(cfg))
    with s3_server(), pytest.MonkeyPatch.context() as mp:
        srv = MlflowServer(workdir)
        mp.setenv("MLFLOW_TRACKING_URI", srv.url)
        for var in ("THINKFLOW_PARENT_RUN_ID", "MLFLOW_PARENT_RUN_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME",
                    "MLFLOW_REGISTRY_URI"):  # fmt: skip
            mp.delenv(var, raising=False)
        versions = {}
        try:
            for path in (good, second, tiny_model):
                result = register(RegisterConfig(model=str(path), eval=None, name=NAME, promote=False))
                versions[path.name] = result.output.rsplit("/", 1)[1]
            assert list(versions.values()) == ["1", "2", "3"]
            yield srv, versions
        finally:
            srv.stop()


# --- tests ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_init_stages_the_alias_version_and_the_server_reports_it(
    registry: tuple[MlflowServer, dict[str, str]], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_registered_model_alias(NAME, "staging", "2")
    cfg = ServeInitConfig(model=f"models:/{NAME}@staging", cache_dir=str(tmp_path / "cache"),
                          output_dir=str(tmp_path / "pod"))  # fmt: skip
    first = serve_init(cfg)
    assert first.metrics == {"version": 2.0, "downloaded": 1.0}
    served = json.loads((tmp_path / "pod" / "served.json").read_text())
    assert served["version"] == "2" and served["served_model_name"] == f"{NAME}-v2" and served["alias"] == "staging"
    assert served["content_hash"] == client.get_model_version(NAME, "2").tags["thinkflow.content_hash"]
    assert (tmp_path / "pod" / "current" / "config.json").is_file()
    assert (tmp_path / "pod" / "served-model-name").read_text().strip() == f"{NAME}-v2"
    # a complete copy in the cache is reused; a copy without its completion marker is downloaded again
    assert serve_init(cfg).metrics["downloaded"] == 0.0
    (tmp_path / "cache" / NAME / "2" / ".thinkflow-complete").unlink()
    assert serve_init(cfg).metrics["downloaded"] == 1.0
    # the version pinned by the pod annotation wins over the alias
    pinned = serve_init(cfg.model_copy(update={"version": "1", "output_dir": str(tmp_path / "pod-1")}))
    assert pinned.artifacts["model_uri"] == f"models:/{NAME}/1"

    server = StandIn(tmp_path)
    try:
        server.start(tmp_path / "pod")
        listing = httpx.get(f"{server.endpoint}/models")
        assert listing.headers["x-thinkflow-model-version"] == "2"
        entry = listing.json()["data"][0]
        assert entry["id"] == f"{NAME}-v2" and entry["thinkflow"]["version"] == "2"
        smoke = smoke_request(server.endpoint, NAME, max_tokens=32)
        assert smoke.ok and smoke.version == "2" and smoke.completion == GOOD_ANSWER, smoke
    finally:
        server.stop()


@pytest.mark.slow
def test_promote_rolls_out_rolls_back_and_never_serves_a_failing_version(
    registry: tuple[MlflowServer, dict[str, str]],
    kube: DeploymentAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mlflow import MlflowClient

    from thinkflow.registry import promote

    caplog.set_level(logging.INFO, logger="thinkflow.serving")  # every decision, shown if the test fails

    client = MlflowClient()
    kube.add(NS, DEPLOYMENT)
    server = StandIn(tmp_path)
    cfg = SyncConfig(
        watch=[WatchTarget(model=f"models:/{NAME}@champion", deployment=DEPLOYMENT, endpoint=server.endpoint)],
        namespace=NS,
        interval_s=0.2,
        rollout_timeout_s=300,
    )
    cfg.smoke.max_tokens = 32
    stop = threading.Event()
    sync = threading.Thread(target=run, args=(cfg,), kwargs={"stop": stop, "client": client, "kube": Kube()})

    def promote_and_wait(version: str) -> dict[str, Any]:
        before = len(served_history(client.get_model_version(NAME, version).tags))
        promote(NAME, version, f"serve version {version}", client=client)
        try:
            return wait_serving(NAME, version, served_before=before, timeout_s=300, poll_s=0.2, client=client)
        finally:
            assert not kubelet.errors, kubelet.errors

    def annotations() -> tuple[str, str | None, bool]:
        dep = kube.get(NS, DEPLOYMENT)
        template = dep["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION]
        served = dep["metadata"].get("annotations", {}).get(SERVED_ANNOTATION)
        return template, served, bool(dep["spec"].get("paused"))

    def answering() -> str:
        return str(httpx.get(f"{server.endpoint}/models").headers["x-thinkflow-model-version"])

    with Kubelet(kube, server, tmp_path) as kubelet:
        sync.start()
        try:
            # promote v1 -> annotation v1, the endpoint serves v1
            entry = promote_and_wait("1")
            assert entry["deployment"] == f"{NS}/{DEPLOYMENT}" and entry["alias"] == "champion"
            assert annotations() == ("1", "1", False) and answering() == "1"
            # promote v2 -> rolled to v2
            promote_and_wait("2")
            assert annotations() == ("2", "2", False) and answering() == "2"
            # promote v1 again -> rolled back
            promote_and_wait("1")
            assert annotations() == ("1", "1", False) and answering() == "1"
            assert len(served_history(client.get_model_version(NAME, "1").tags)) == 2
            # v3 does not answer well formed: the rollout is paused and v3 tagged, never recorded as served
            with pytest.raises(ServingFailed, match="smoke test failed: answer is not <think>"):
                promote_and_wait("3")
            tags = client.get_model_version(NAME, "3").tags
            assert SERVED_AT_TAG not in tags and "smoke test failed" in tags[FAILED_TAG]
            assert annotations() == ("3", "", True)  # rolled to 3, not served, paused
            # the rollback is promoting the previous version: un-paused and rolled to v1
            promote_and_wait("1")
            assert annotations() == ("1", "1", False) and answering() == "1"
            assert kubelet.started == ["1", "2", "1", "3", "1"] and not kubelet.errors
            # serve-sync only ever read and patched the one Deployment it was given
            assert {r.split(" ", 1)[0] for r in kube.requests} == {"GET", "PATCH"}
            assert all(f"/namespaces/{NS}/deployments/{DEPLOYMENT}" in r for r in kube.requests)
        finally:
            stop.set()
            sync.join(timeout=60)
