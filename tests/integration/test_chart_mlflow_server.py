"""The chart's MLflow container, run for real: the rendered command, arguments and environment start `mlflow server`.

The chart is rendered by Helm's engine (helm-python-sdk) with auth on (the default) and an Ingress. From the
rendered Deployment the test takes the MLflow container's exact command, args and env; it resolves each
``secretKeyRef`` from the rendered Secrets and expands ``$(VAR)`` as the kubelet does. Swapped, and only these:
the Postgres URI for sqlite, the S3 endpoint for a loopback S3 server (moto; the bucket the bootstrap Job would
create is created), the volume mount paths for temp dirs, and ``--host``/``--port`` for a free loopback port.

Then, against the real server: an authenticated REST call with the Service's Host header (and a 401 without
credentials), a call by pod IP (MLflow's private-IP default kept), an artifact upload and download through
``--serve-artifacts`` (the object lands in the bucket under the chart's prefix), and a state-changing POST from
the ingress ``Origin`` (accepted) and from a foreign one (rejected, MLflow's CORS check).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from thinkflow.testing import free_port, s3_server, stop, wait_http

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is in the [dev] extras")

pytestmark = pytest.mark.slow

CHART = Path(__file__).resolve().parents[2] / "charts" / "thinkflow"
RELEASE, NS = "thinkflow", "thinkflow"
HOST = "mlflow.thinkflow.test"
VALUES = {
    "mlflow": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "hosts": [HOST],
            "tls": [{"secretName": "mlflow-tls", "hosts": [HOST]}],
            "controllerFrom": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
            ],
        }
    }
}
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of an env value: earlier variables only; ``$$`` escapes; unknown kept."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, value)


@dataclass
class Rendered:
    test_container: dict[str, Any]
    users_container: dict[str, Any]  # the mlflow-users hook Job's (the pipelines' MLflow user)
    container: dict[str, Any]
    volumes: dict[str, dict[str, Any]]
    configmaps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]
    service: dict[str, Any]


def render() -> Rendered:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(VALUES, name=RELEASE, namespace=NS, is_install=True)
    objects = [d for p, t in manifests.items() if not p.endswith("NOTES.txt") for d in yaml.safe_load_all(t) if d]
    deploy = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{RELEASE}-mlflow")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    test_job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == f"{RELEASE}-test")
    test_container = next(c for c in test_job["spec"]["template"]["spec"]["containers"] if c["name"] == "mlflow")
    users_job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == f"{RELEASE}-mlflow-users")
    return Rendered(
        test_container=test_container,
        users_container=users_job["spec"]["template"]["spec"]["containers"][0],
        container=container,
        volumes={v["name"]: v for v in pod["volumes"]},
        configmaps={o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"},
        secrets={
            o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o["data"].items()}
            for o in objects
            if o["kind"] == "Secret" and o["metadata"]["namespace"] == NS
        },
        service=next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == f"{RELEASE}-mlflow"),
    )


def container_env(r: Rendered, swaps: dict[str, str], container: dict[str, Any] | None = None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in (container or r.container)["env"]:
        name = item["name"]
        if "value" in item:
            env[name] = expand(item["value"], env)
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] in r.secrets, f"{name}: Secret {ref['name']} is not rendered"
            env[name] = r.secrets[ref["name"]][ref["key"]]
    for name, value in swaps.items():
        assert name in env, f"swapping {name}, which the container does not set"
        env[name] = value
    return env


@dataclass
class Server:
    rendered: Rendered
    url: str
    port: int
    admin: tuple[str, str]
    service_host: str
    proc: subprocess.Popen[bytes]
    s3_url: str
    bucket_prefix: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    r = render()
    tmp = tmp_path_factory.mktemp("mlflow-chart")
    mounts = {m["mountPath"]: tmp / m["name"] for m in r.container["volumeMounts"]}
    for path in mounts.values():
        path.mkdir()
    # volumes: the ConfigMap's files into the start volume's mount; the paths the script uses mapped onto temp dirs
    start_cm = r.volumes["start"]["configMap"]["name"]
    start_dir = mounts["/etc/thinkflow"]
    for key, text in r.configmaps[start_cm].items():
        tokens = {f"\0{i}\0": local for i, local in enumerate(mounts.values())}
        for token, mount in zip(tokens, mounts, strict=True):
            text = text.replace(mount + "/", token + "/")
        for token, local in tokens.items():
            text = text.replace(token, str(local))
        (start_dir / key).write_text(text)
    command = [start_dir / Path(a).name if a.startswith("/etc/thinkflow/") else a for a in r.container["command"]]
    port = free_port()
    args = []
    for a in r.container["args"]:
        if a.startswith("--host="):
            a = "--host=127.0.0.1"
        elif a.startswith("--port="):
            a = f"--port={port}"
        args.append(a)
    with s3_server() as s3_url:
        env = container_env(
            r,
            {
                "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp / 'mlflow.db'}",
                "MLFLOW_S3_ENDPOINT_URL": s3_url,
                "HOME": str(mounts["/tmp"]),  # the container's /tmp mount
            },
        )
        env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # the image puts mlflow on PATH
        destination = env["MLFLOW_ARTIFACTS_DESTINATION"]
        bucket, _, prefix = destination.removeprefix("s3://").partition("/")
        import boto3

        boto3.client(
            "s3",
            endpoint_url=s3_url,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=bucket)
        log = tmp / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*map(str, command), *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health", timeout=240, proc=proc)
        except Exception:
            proc.kill()
            raise RuntimeError(f"the chart's mlflow container did not start:\n{log.read_text()[-4000:]}") from None
        svc = r.service["metadata"]["name"]
        try:
            yield Server(
                rendered=r,
                url=url,
                port=port,
                admin=(env["MLFLOW_AUTH_ADMIN_USERNAME"], env["MLFLOW_AUTH_ADMIN_PASSWORD"]),
                service_host=f"{svc}.{NS}.svc.cluster.local:{r.service['spec']['ports'][0]['port']}",
                proc=proc,
                s3_url=s3_url,
                bucket_prefix=f"{bucket}/{prefix}",
            )
        finally:
            stop(proc)


def test_the_rendered_container_needs_the_secret_key_and_gets_it() -> None:
    """MLflow 3.17's basic-auth app refuses to start without MLFLOW_FLASK_SERVER_SECRET_KEY
    (mlflow/server/auth/__init__.py, get_flask_server_secret_key); the chart hands it from a Secret."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import get_flask_server_secret_key

    saved = os.environ.pop("MLFLOW_FLASK_SERVER_SECRET_KEY", None)
    try:
        with pytest.raises(MlflowException, match="static secret key"):
            get_flask_server_secret_key()
    finally:
        if saved is not None:
            os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"] = saved
    r = render()
    env = container_env(r, {})
    assert len(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) >= 32
    assert "--app-name basic-auth" in r.configmaps[f"{RELEASE}-mlflow"]["start.sh"]


def test_authenticated_rest_call_with_the_service_host(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        path = "/api/2.0/mlflow/experiments/search?max_results=5"
        anonymous = http.get(path, headers={"Host": server.service_host})
        assert anonymous.status_code == 401, anonymous.text
        ok = http.get(path, headers={"Host": server.service_host}, auth=server.admin)
        assert ok.status_code == 200, ok.text
        assert any(e["name"] == "Default" for e in ok.json()["experiments"])
        # an in-cluster caller by pod IP: MLflow's private-IP default is kept in --allowed-hosts
        by_ip = http.get(path, headers={"Host": f"10.42.3.7:{server.port}"}, auth=server.admin)
        assert by_ip.status_code == 200, by_ip.text
        rebinding = http.get(path, headers={"Host": "evil.example.com"}, auth=server.admin)
        assert rebinding.status_code == 403 and "Invalid Host header" in rebinding.text


def test_artifact_upload_through_the_proxy(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin[1])
    # the client needs no S3 credentials: artifacts go through the server (--serve-artifacts)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    client = MlflowClient(tracking_uri=server.url)
    exp = client.create_experiment("chart-artifacts")
    run = client.create_run(exp)
    src = tmp_path / "note.txt"
    src.write_text("through the proxy\n")
    client.log_artifact(run.info.run_id, str(src), artifact_path="docs")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    back = Path(client.download_artifacts(run.info.run_id, "docs/note.txt", str(tmp_path / "back")))
    assert back.read_text() == "through the proxy\n"
    import boto3

    bucket, _, prefix = server.bucket_prefix.partition("/")
    keys = [
        o["Key"]
        for o in boto3.client(
            "s3", endpoint_url=server.s3_url, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
        ).list_objects_v2(Bucket=bucket, Prefix=prefix + "/")["Contents"]
    ]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/docs/note.txt") for k in keys), keys


def test_post_from_the_ingress_origin_is_accepted_and_a_foreign_one_rejected(server: Server) -> None:
    path = "/api/2.0/mlflow/experiments/create"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        same = http.post(
            path,
            json={"name": "from-the-ui"},
            headers={"Host": HOST, "Origin": f"https://{HOST}"},
            auth=server.admin,
        )
        assert same.status_code == 200, same.text
        assert same.json()["experiment_id"]
        foreign = http.post(
            path,
            json={"name": "from-elsewhere"},
            headers={"Host": HOST, "Origin": "https://evil.example.com"},
            auth=server.admin,
        )
        assert foreign.status_code == 403 and "Cross-origin request blocked" in foreign.text
        # the plain-http origin of a TLS host is not the UI's origin either
        downgraded = http.post(
            path,
            json={"name": "downgraded"},
            headers={"Host": HOST, "Origin": f"http://{HOST}"},
            auth=server.admin,
        )
        assert downgraded.status_code == 403


def test_helm_test_script_passes_against_the_server(server: Server, tmp_path: Path) -> None:
    """`helm test`'s MLflow container (its exact command and env; only the URL argument swapped for the loopback
    one): an authenticated API call and an artifact round trip through the proxy."""
    c = server.rendered.test_container
    env = container_env(server.rendered, {"HOME": str(tmp_path)}, c)
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", HOSTNAME="thinkflow-test-abcde")
    cmd = [*c["command"][:-1], server.url]
    assert c["command"][-1].startswith("http://") and c["command"][0] == "python"
    cmd[0] = sys.executable
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "artifact round trip through the proxy OK" in done.stdout
    assert "PUT /api/2.0/mlflow-artifacts/artifacts/.thinkflow-helm-test/thinkflow-test-abcde.txt 200" in done.stdout
    # with a wrong password the same script fails, naming the call
    env["MLFLOW_TRACKING_PASSWORD"] = "wrong"
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "expected 200, got 401" in bad.stderr


def test_hook_job_creates_a_pipeline_user_that_can_train_and_register_but_not_administer(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Least privilege (issue 12 item 10): the mlflow-users hook Job's exact command and env (only the URL swapped
    for the loopback one), run twice as install and upgrade do, leaves a user that logs runs and registers versions
    in the chart's experiment and model with the pipelines' Secret, and gets 403 on user management and on an
    experiment it was not granted (MLflow's default_permission READ)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient
    from mlflow.tracking import MlflowClient

    c = server.rendered.users_container
    env = container_env(server.rendered, {"MLFLOW_TRACKING_URI": server.url, "HOME": str(tmp_path)}, c)
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    assert c["command"][:2] == ["python", "-c"]
    cmd = [sys.executable, *c["command"][1:]]
    outputs = []
    for _ in ("install", "upgrade"):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    user, password = env["PIPELINE_USERNAME"], env["PIPELINE_PASSWORD"]
    assert f"created MLflow user {user}" in outputs[0] and "exists; password set from its Secret" in outputs[1]
    assert user != server.admin[0] and f"{user}: EDIT on registered_model thinkflow-vlm" in outputs[1]
    # the pipelines' Secret as a pipeline or TrainJob pod gets it (envFrom thinkflow-mlflow-pipeline)
    pipeline_secret = server.rendered.secrets["thinkflow-mlflow-pipeline"]
    pods_get = (pipeline_secret["MLFLOW_TRACKING_USERNAME"], pipeline_secret["MLFLOW_TRACKING_PASSWORD"])
    assert pods_get == (user, password)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(json.loads(env["PIPELINE_EXPERIMENTS"])[0])
    assert experiment is not None
    run = client.create_run(experiment.experiment_id, run_name="pipeline-user")
    client.log_metric(run.info.run_id, "reward", 0.5)
    client.set_terminated(run.info.run_id)
    model = json.loads(env["PIPELINE_REGISTERED_MODELS"])[0]
    version = client.create_model_version(model, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(model, "challenger", version.version)
    assert client.get_model_version_by_alias(model, "challenger").version == version.version
    own = client.create_experiment("pipeline-user-own")  # MLflow grants the creator MANAGE
    client.create_run(own)
    auth = AuthServiceClient(server.url)
    for forbidden in (
        lambda: auth.create_user("intruder", "a-long-password-123"),
        lambda: auth.update_user_admin(user, True),
        lambda: auth.grant_user_permission(user, "experiment", "0", "MANAGE"),
    ):
        with pytest.raises(MlflowException) as denied:
            forbidden()
        assert denied.value.get_http_status_code() == 403, denied.value
    # a person's experiment (created by the admin, no grant): READ for the pipelines' user
    with httpx.Client(base_url=server.url, timeout=30) as http:
        made = http.post("/api/2.0/mlflow/experiments/create", json={"name": "a-person-s"}, auth=server.admin)
        assert made.status_code == 200, made.text
    with pytest.raises(MlflowException) as denied:
        client.create_run(made.json()["experiment_id"])
    assert denied.value.get_http_status_code() == 403
    # the admin password never reached the pipelines' Secret
    assert server.admin[1] not in pipeline_secret.values()
