"""The registry against a real ``mlflow server`` (sqlite backend, artifacts proxied to a loopback S3 server).

Evaluate from S3, register with lineage, alias, gate both ways, idempotent re-run, racing gates over REST,
load ``models:/NAME@champion`` back and answer an image question, and the MLflow UI's model page in headless
Chromium showing the champion alias.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eval_fixtures as fx
from thinkflow import storage
from thinkflow.testing import free_port, s3_server, wait_http

NAME = "vlm"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


class MlflowServer:
    """``mlflow server`` on loopback: sqlite backend store, artifacts proxied to ``s3://mlflow/artifacts``."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "mlflow-server.log"
        storage.client().make_bucket("mlflow")
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", "s3://mlflow/artifacts",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2",
        ]  # fmt: skip
        # The server reaches S3 with the env s3_server() set (MLFLOW_S3_ENDPOINT_URL, AWS_*); loopback hosts are
        # allowed by MLflow 3's host-header check by default (--allowed-hosts only matters beyond localhost).
        with open(self.log, "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            wait_http(f"{self.url}/health", timeout=180, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"mlflow server did not start:\n{self.log.read_text()[-3000:]}") from None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    workdir = tmp_path_factory.mktemp("mlflow-server")
    with s3_server(), pytest.MonkeyPatch.context() as mp:
        srv = MlflowServer(workdir)
        mp.setenv("MLFLOW_TRACKING_URI", srv.url)
        mp.setenv("THINKFLOW_CACHE", str(workdir / "cache"))  # URIs repeat across runs: no stale cache
        for name in (
            "THINKFLOW_PARENT_RUN_ID",
            "MLFLOW_PARENT_RUN_ID",
            "MLFLOW_RUN_ID",
            "MLFLOW_EXPERIMENT_NAME",
            "MLFLOW_REGISTRY_URI",
        ):
            mp.delenv(name, raising=False)
        try:
            yield srv
        finally:
            srv.stop()


def _upload_model(tiny_model: Path, uri: str, tmp: Path, variant: int, lineage: dict[str, Any] | None) -> str:
    local = tmp / f"model-{variant}"
    shutil.copytree(tiny_model, local)
    if variant:
        cfg = json.loads((local / "generation_config.json").read_text())
        cfg["max_new_tokens"] = 100 + variant  # another model (content hash) with the same weights
        (local / "generation_config.json").write_text(json.dumps(cfg))
    if lineage is not None:
        (local / "lineage.json").write_text(json.dumps(lineage))
    storage.upload(local, uri)
    return uri


def _eval_variant(metrics: dict[str, Any], uri: str, delta: float) -> str:
    """The same evaluation (same eval set) with every score moved by ``delta``: a better / worse model."""
    doc = copy.deepcopy(metrics)
    doc["overall"]["mean_score"] = metrics["overall"]["mean_score"] + delta
    for bench in doc["benchmarks"].values():
        bench["score"] += delta
    storage.write_text(storage.join(uri, "metrics.json"), json.dumps(doc))
    return uri


@pytest.mark.slow
def test_evaluate_register_gate_and_serve_the_champion(server: MlflowServer, tiny_model: Path, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient
    from PIL import Image

    from thinkflow.evaluate import EvalConfig
    from thinkflow.evaluate import run as evaluate
    from thinkflow.evaluate.generate import generate
    from thinkflow.models.load import load
    from thinkflow.registry import RegisterConfig, register
    from thinkflow.registry.gate import gate
    from thinkflow.train.lineage import build_lineage

    client = MlflowClient()
    # benchmarks and the model live in S3; the evaluation reads them there and writes its report there
    bench = {name: fx.WRITERS[name](tmp_path / name) for name in ("mathvista", "logicvista")}
    for name, path in bench.items():
        storage.upload(path, f"s3://bench/{name}")
    lineage = build_lineage(
        stage="grpo",
        config={"learning_rate": 1e-6},
        base_model="s3://models/base",
        data="s3://data/vlaa",
        manifest_hash="sha256:0123",
        split="rl",
        num_examples=8,
        global_step=4,
        metrics={"reward": 0.4},
        mlflow_run_id=None,
    )
    model_a = _upload_model(tiny_model, "s3://models/a", tmp_path, 0, lineage)
    result = evaluate(
        EvalConfig(
            model=model_a,
            data=[f"{n}=s3://bench/{n}" for n in bench],
            output_dir="s3://evals/a",
            max_new_tokens=8,
            progress=False,
        )
    )
    assert storage.exists("s3://evals/a/report.html") and result.artifacts["metrics"] == "s3://evals/a/metrics.json"
    metrics_a = json.loads(storage.read_text("s3://evals/a/metrics.json"))

    # first registration: @challenger and, with no champion yet, @champion
    r1 = register(RegisterConfig(model=model_a, eval="s3://evals/a", name=NAME))
    assert r1.output == f"models:/{NAME}/1" and r1.metrics["promoted"] == 1
    v1 = client.get_model_version(NAME, "1")
    assert v1.tags["lineage.dataset_uri"] == "s3://data/vlaa" and "manifest `sha256:0123`" in v1.description
    assert v1.tags["lineage.base_model"] == "s3://models/base" and v1.tags["lineage.stage"] == "grpo"
    assert len(v1.tags) <= 12 and "## Gate decision" in v1.description and "| **overall** |" in v1.description
    # the full lineage stays on the register run; what the training stage did not record is named there
    run_tags = mlflow.get_run(r1.mlflow_run_id).data.tags
    assert run_tags["lineage.dataset_manifest_hash"] == "sha256:0123"
    assert "lineage.git_sha" in run_tags or "git_sha" in run_tags["lineage.missing"]
    assert {"pipeline_run_id", "image", "reward_mix"} <= set(run_tags["lineage.missing"].split(", "))
    assert "Unknown lineage: " in v1.description
    assert v1.tags["eval.set_hash"] == metrics_a["eval_set_hash"]
    # artifacts went through the server's proxy into the S3 bucket
    assert mlflow.get_run(r1.mlflow_run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    keys = [o.object_name for o in storage.client().list_objects("mlflow", prefix="artifacts/", recursive=True)]
    assert any(k.endswith("model/model.safetensors") for k in keys) and any(k.endswith("MLmodel") for k in keys)

    # idempotent re-run: same version, no new one
    again = register(RegisterConfig(model=model_a, eval="s3://evals/a", name=NAME))
    assert again.output == r1.output and again.metrics["created"] == 0
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1

    # gate both ways: better -> champion, worse -> challenger only
    model_b = _upload_model(tiny_model, "s3://models/b", tmp_path, 1, lineage)
    rb = register(RegisterConfig(model=model_b, eval=_eval_variant(metrics_a, "s3://evals/b", 0.2), name=NAME))
    assert rb.metrics["promoted"] == 1 and str(client.get_registered_model(NAME).aliases["champion"]) == "2"
    model_c = _upload_model(tiny_model, "s3://models/c", tmp_path, 2, lineage)
    rc = register(RegisterConfig(model=model_c, eval=_eval_variant(metrics_a, "s3://evals/c", 0.1), name=NAME))
    assert rc.metrics["promoted"] == 0 and rc.artifacts["gate"] == "rejected"
    aliases = client.get_registered_model(NAME).aliases
    assert str(aliases["champion"]) == "2" and str(aliases["challenger"]) == "3"
    assert client.get_model_version(NAME, "3").tags["gate.champion_version"] == "2"

    # two gates racing over REST: the better one ends as champion
    racers = {}
    for variant, delta in ((3, 0.25), (4, 0.3)):
        uri = _upload_model(tiny_model, f"s3://models/r{variant}", tmp_path, variant, lineage)
        r = register(
            RegisterConfig(
                model=uri, eval=_eval_variant(metrics_a, f"s3://evals/r{variant}", delta), name=NAME, promote=False
            )
        )
        racers[r.output.rsplit("/", 1)[1]] = delta
    threads = [threading.Thread(target=gate, args=(NAME, v)) for v in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    best = max(racers, key=lambda v: racers[v])
    assert str(client.get_registered_model(NAME).aliases["champion"]) == best
    assert not [m.name for m in client.search_registered_models() if m.name.endswith(".gate-lock")]

    # serve the champion: load models:/NAME@champion back and answer a question about an image
    components = mlflow.transformers.load_model(f"models:/{NAME}@champion", return_type="components")
    model, processor = components["model"], components["processor"]
    assert model.generation_config.max_new_tokens == 104  # the champion is model r4
    image = fx.picture(2)
    answer = generate(model, processor, [image], ["How many circles are there?"], max_new_tokens=8)[0]
    assert isinstance(answer, str) and answer
    ref_model, ref_processor = load(tiny_model)
    assert answer == generate(ref_model, ref_processor, [image], ["How many circles are there?"], max_new_tokens=8)[0]
    assert isinstance(image, Image.Image)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _browse(browser: str, url: str, args: list[str], budget_ms: int) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args, url],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip


@pytest.mark.slow
def test_mlflow_ui_model_page_shows_champion(server: MlflowServer, tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from PIL import Image

    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    import mlflow

    client = MlflowClient()
    name = "ui-vlm"
    client.create_registered_model(name)
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model/weights.txt")
    source = f"runs:/{run.info.run_id}/model"
    v1 = client.create_model_version(
        name, source=source, run_id=run.info.run_id, tags={"eval.overall.mean_score": "0.5"}
    )
    client.create_model_version(name, source=source, run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", str(v1.version))
    url = f"{server.url}/#/models/{name}"
    # the UI is a single-page app: let it run (virtual time) until the alias is rendered
    dom = ""
    for budget in (10_000, 20_000, 40_000):
        dom = _browse(browser, url, ["--dump-dom"], budget).stdout
        if "champion" in dom:
            break
    assert name in dom and "champion" in dom, dom[-2000:]
    out_dir = Path(os.environ.get("THINKFLOW_SCREENSHOT_DIR", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "mlflow-model-champion.png"
    done = _browse(browser, url, [f"--screenshot={shot}", "--window-size=1400,900"], budget)
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1400, 900)
        colours = im.convert("L").getextrema()
        assert colours[0] < 100 < colours[1]  # rendered content, not a blank page
