"""The Helm chart, rendered by Helm's own engine (helm-python-sdk, Helm 4 through ctypes), no cluster.

Each values file is rendered once per module (fixture `rendered`); every test reads that rendering. Checks:
lint, values schema, strict Kubernetes schemas, the Trainer API schema for Trainer objects, checkov, no
Secret value outside a Secret, pod hardening, NetworkPolicies, credentials, pinned images, MLflow host
validation and probes, and the KFP wiring the pipelines rely on.
"""

from __future__ import annotations

import base64
import configparser
import copy
import functools
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from thinkflow import env as tf_env
from thinkflow.pipelines.common import (
    ACCELERATOR,
    CONFIG_MAP_KEYS,
    GPU_NODE_SELECTOR,
    GPU_TOLERATIONS,
    MLFLOW_KEYS,
    REWARD_TOKEN_KEY,
    REWARD_URL_KEY,
    S3_KEYS,
    TEACHER_KEYS,
    PipelineOptions,
)

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is in the [dev] extras")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "thinkflow"
PRODUCTION = CHART / "ci" / "production-values.yaml"
RELEASE, NAMESPACE = "thinkflow", "thinkflow"
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())  # Chart.yaml kubeVersion floor, newest

# The names the pipelines (thinkflow.pipelines) and the chart agree on, as the code defines them: the chart
# must create exactly these (env names from thinkflow.env, Secret names and keys from the pipelines' options).
OPTIONS = PipelineOptions()
S3_SECRET, MLFLOW_SECRET, TEACHERS_SECRET = OPTIONS.s3_secret, OPTIONS.mlflow_secret, OPTIONS.teachers_secret
REWARD_SECRET = OPTIONS.reward_secret
SECRET_KEYS = {S3_SECRET: set(S3_KEYS), MLFLOW_SECRET: set(MLFLOW_KEYS), TEACHERS_SECRET: set(TEACHER_KEYS)}
(S3_ACCESS_KEY, S3_SECRET_KEY), (MLFLOW_USERNAME_KEY, MLFLOW_PASSWORD_KEY), (TEACHER_KEY,) = (
    S3_KEYS,
    MLFLOW_KEYS,
    TEACHER_KEYS,
)
ENV_CONFIGMAP = OPTIONS.env_config_map
GPU_RESOURCE = ACCELERATOR
((GPU_SELECTOR_KEY, _),) = GPU_NODE_SELECTOR.items()
(GPU_TOLERATION,) = GPU_TOLERATIONS
KFP_POD_LABEL = {"pipelines.kubeflow.org/v2_component": "true"}  # KFP's own label on every task pod
CLIENT_LABEL = OPTIONS.pod_labels
MLFLOW_ADMIN_SECRET = "thinkflow-mlflow"  # the admin, for people: release namespace only (issue 12 item 10)
POD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet", "Pod"}


@dataclass
class Rendering:
    values: dict[str, Any]
    manifests: dict[str, str]  # template path -> rendered text
    objects: list[dict[str, Any]]

    @property
    def pipelines_namespace(self) -> str:
        default = load_values(CHART / "values.yaml")["pipelines"]["namespace"]
        return self.values.get("pipelines", {}).get("namespace", default) or NAMESPACE

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = [
            o
            for o in self.objects
            if o["kind"] == kind
            and o["metadata"]["name"] == name
            and (namespace is None or o["metadata"].get("namespace") == namespace)
        ]
        assert len(found) == 1, f"expected one {kind} {name} in {namespace}, found {len(found)}"
        return found[0]


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any]) -> Rendering:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                objects.append(doc)
    return Rendering(values, manifests, objects)


CASES = {"default": {}, "production": load_values(PRODUCTION)}


@functools.cache
def rendering(case: str) -> Rendering:
    """Each values file is rendered once per test session; tests only read the result."""
    return render(CASES[case])


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request: pytest.FixtureRequest) -> Rendering:
    return rendering(request.param)


@pytest.fixture(scope="module")
def default() -> Rendering:
    return rendering("default")


@pytest.fixture(scope="module")
def production() -> Rendering:
    return rendering("production")


def pod_templates(r: Rendering) -> list[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) for every pod the rendering can create, including the Trainer runtime's."""
    out = []
    for o in r.objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "Pod":
            out.append((name, o["spec"]))
        elif o["kind"] in POD_KINDS:
            out.append((name, o["spec"]["template"]["spec"]))
        elif o["kind"] == "ClusterTrainingRuntime":
            for job in o["spec"]["template"]["spec"]["replicatedJobs"]:
                out.append((f"{name}/{job['name']}", job["template"]["spec"]["template"]["spec"]))
    return out


def pod_labels(r: Rendering) -> list[tuple[str, dict[str, str]]]:
    out = []
    for o in r.objects:
        if o["kind"] in POD_KINDS - {"Pod"}:
            out.append((o["metadata"]["name"], o["spec"]["template"]["metadata"]["labels"]))
    return out


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# ---------------------------------------------------------------------------------------------- lint, schema


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_is_clean(case: str) -> None:
    for kube in KUBE_VERSIONS:
        report = helm.lint(CHART, CASES[case], strict=True, namespace=NAMESPACE, kube_version=f"v{kube}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error; 1 is info
        assert not report["errors"] and not problems, (case, kube, report)


def _leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    return [path]


def _schema_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node = schema
    for key in path:
        props = node.get("properties", {})
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def test_schema_describes_every_value_and_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = load_values(CHART / "values.yaml")
    for case in CASES.values():
        for leaf in _leaves(values) + _leaves(case):
            node = _schema_at(schema, leaf)
            assert node is not None, f"values key {'.'.join(leaf)} is not in values.schema.json"
            assert "type" in node or "anyOf" in node or "enum" in node, ".".join(leaf)

    def closed(node: dict[str, Any], where: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for key, child in node["properties"].items():
                closed(child, f"{where}.{key}")
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            closed(node["items"], f"{where}[]")

    closed(schema, "values")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"securityContext": {"runAsUser": 0}}, "runAsUser"),
        ({"mlflow": {"workerz": 2}}, "workerz"),
        ({"minio": {"image": {"digest": ""}}}, "digest"),
        ({"mlflow": {"auth": {"defaultPermission": "ALL"}}}, "defaultPermission"),
        ({"s3": {"endpoint": "s3.amazonaws.com"}}, "endpoint"),
    ],
)
def test_schema_rejects_bad_values(override: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=message):
        chart.render(override, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"minio": {"enabled": False}}, "s3.endpoint is required"),
        ({"minio": {"enabled": False}, "s3": {"endpoint": "https://s3.example.com"}}, "s3.existingSecret is required"),
        ({"postgres": {"enabled": False}}, "mlflow.backendStore.existingSecret is required"),
        ({"inference": {"enabled": True}}, "at least one entry"),
        (
            {
                "inference": {
                    "enabled": True,
                    "models": [
                        {
                            "name": "reward",
                            "servedModelName": "m",
                            "source": {},
                            "gpus": 1,
                            "resources": {
                                "requests": {"cpu": 1, "memory": "1Gi"},
                                "limits": {"cpu": 1, "memory": "1Gi"},
                            },
                        }
                    ],
                }
            },
            r"inference.models\[reward\].source",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_message_naming_the_value(override: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=message):
        chart.render(override, name=RELEASE, namespace=NAMESPACE)


# -------------------------------------------------------------------------------- schemas of rendered objects


def test_every_object_validates_strictly_against_kubernetes(rendered: Rendering) -> None:
    checked = 0
    for obj in rendered.objects:
        if obj["apiVersion"].startswith("trainer.kubeflow.org/"):
            continue  # custom resources: test_trainer_objects_validate_against_the_trainer_api
        for kube in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, kube, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for {kube} at {path}: {exc.message}")
        checked += 1
    assert checked >= 10


def _same(a: Any, b: Any, path: str = "") -> list[str]:
    """Differences between a rendered object and its round trip through the Trainer API models."""
    if isinstance(a, bool) or isinstance(b, bool):
        return [] if a == b else [path]
    if isinstance(a, int | float) and isinstance(b, int | float):
        return [] if a == b else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in set(a) | set(b) for d in (_same(a.get(k), b.get(k), f"{path}.{k}"))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _same(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def test_trainer_objects_validate_against_the_trainer_api(production: Rendering) -> None:
    from kubeflow_trainer_api.models.trainer_v1alpha1_cluster_training_runtime import (
        TrainerV1alpha1ClusterTrainingRuntime,
    )

    runtimes = production.of_kind("ClusterTrainingRuntime")
    assert len(runtimes) == 1
    rt = runtimes[0]
    assert rt["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    model = TrainerV1alpha1ClusterTrainingRuntime.from_dict(copy.deepcopy(rt))
    assert model is not None
    # The generated models drop fields they do not know: a lossless round trip means every field is in the API.
    assert _same(rt, model.to_dict()) == [], "fields unknown to the Trainer API"
    # The JobSet's Job templates are plain batch/v1 JobSpecs: validate them strictly too.
    for job in rt["spec"]["template"]["spec"]["replicatedJobs"]:
        wrapped = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job["name"]},
            "spec": job["template"]["spec"],
        }
        for kube in KUBE_VERSIONS:
            kubernetes_validate.validate(wrapped, kube, strict=True)
    node = rt["spec"]["template"]["spec"]["replicatedJobs"][0]
    assert node["name"] == "node"
    assert node["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    assert [c["name"] for c in node["template"]["spec"]["template"]["spec"]["containers"]] == ["node"]
    assert "torch" in rt["spec"]["mlPolicy"] and rt["metadata"]["labels"]["trainer.kubeflow.org/framework"] == "torch"


def test_trainer_runtime_is_off_by_default(default: Rendering) -> None:
    assert default.of_kind("ClusterTrainingRuntime") == []


# ---------------------------------------------------------------------------------------------------- checkov


def test_checkov_has_no_failed_check(rendered: Rendering, tmp_path: Path) -> None:
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text("\n---\n".join(yaml.safe_dump(o, sort_keys=False) for o in rendered.objects))
    checkov = Path(sys.executable).with_name("checkov")
    proc = subprocess.run(
        [str(checkov), "-f", str(manifest), "--config-file", str(CHART / ".checkov.yaml"), "-o", "json", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
        timeout=600,
    )
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    failed = report.get("results", {}).get("failed_checks", [])
    assert summary["failed"] == 0, [(c["check_id"], c["resource"]) for c in failed]
    assert summary["passed"] > 100 and summary["resource_count"] >= 10
    # the only per-object skip is the digest one, on objects running a ThinkFlow image without a digest
    for check in report.get("results", {}).get("skipped_checks", []):
        assert check["check_id"] == "CKV_K8S_43", check


# ------------------------------------------------------------------------------------------------ credentials


def test_no_secret_value_appears_outside_a_secret(rendered: Rendering) -> None:
    secrets = rendered.of_kind("Secret")
    values = set()
    for s in secrets:
        for key, encoded in s.get("data", {}).items():
            if not key.endswith("USERNAME"):  # a user name ("thinkflow") is not a secret
                values |= {encoded, base64.b64decode(encoded).decode()}
    assert all(len(v) >= 16 for v in values)
    others = [o for o in rendered.objects if o["kind"] != "Secret"]
    for obj in others:
        text = json.dumps(obj)
        for value in values:
            assert value not in text, f"a Secret value appears in {obj['kind']}/{obj['metadata']['name']}"
    # and no credential is ever an inline env value
    sensitive = re.compile(r"(PASSWORD|SECRET|API_KEY|ACCESS_KEY|TOKEN)")
    for name, spec in pod_templates(rendered):
        for c in containers(spec):
            for env in c.get("env", []):
                if sensitive.search(env["name"]):
                    assert "valueFrom" in env and "value" not in env, f"{name}/{c['name']}: {env['name']} inline"


def test_credentials_are_generated_not_defaulted(default: Rendering) -> None:
    again = render({})
    generated = {(s["metadata"]["name"], s["metadata"]["namespace"]): s["data"] for s in default.of_kind("Secret")}
    regenerated = {(s["metadata"]["name"], s["metadata"]["namespace"]): s["data"] for s in again.of_kind("Secret")}
    pns = default.pipelines_namespace
    assert pns == "kubeflow"  # standalone KFP runs pipeline pods there (issue 12 §6)
    assert set(generated) == {
        (f"{RELEASE}-minio", NAMESPACE),
        (f"{RELEASE}-postgres", NAMESPACE),
        (f"{RELEASE}-mlflow-server", NAMESPACE),  # MLFLOW_FLASK_SERVER_SECRET_KEY: server side only
        (MLFLOW_ADMIN_SECRET, NAMESPACE),  # the admin never reaches the pipelines' namespace
        *((name, ns) for name in (S3_SECRET, MLFLOW_SECRET, TEACHERS_SECRET) for ns in (NAMESPACE, pns)),
    }
    server_key = base64.b64decode(generated[(f"{RELEASE}-mlflow-server", NAMESPACE)]["MLFLOW_FLASK_SERVER_SECRET_KEY"])
    assert len(server_key) >= 32
    for key, data in generated.items():
        for field, encoded in data.items():
            if field == MLFLOW_USERNAME_KEY:
                continue
            value = base64.b64decode(encoded).decode()
            assert len(value) >= 16, (key, field)
            # no fixed default: a fresh install draws a different value
            assert regenerated[key][field] != encoded, (key, field)
    for s in default.of_kind("Secret"):
        # kept on uninstall: the volumes they unlock outlive the release
        assert s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # generated once: upgrades read the stored value back instead of drawing a new one
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert re.search(r'lookup "v1" "Secret" \.root\.Release\.Namespace \.secret', helpers)


def test_pipeline_secrets_have_the_agreed_names_and_keys(default: Rendering) -> None:
    for name, keys in SECRET_KEYS.items():
        secret = default.get("Secret", name, NAMESPACE)
        assert set(secret["data"]) == keys


def test_existing_secrets_replace_generated_ones(production: Rendering) -> None:
    assert production.of_kind("Secret") == []
    mlflow = production.get("Deployment", f"{RELEASE}-mlflow")["spec"]["template"]["spec"]["containers"][0]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in mlflow["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {
        "MLFLOW_BACKEND_STORE_URI": "thinkflow-mlflow-db",
        S3_ACCESS_KEY: S3_SECRET,
        S3_SECRET_KEY: S3_SECRET,
        "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_ADMIN_SECRET,
        "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_ADMIN_SECRET,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "thinkflow-mlflow-server-key",
    }


def test_mlflow_secret_key_is_shared_and_can_be_yours(default: Rendering) -> None:
    """MLflow 3.17's basic-auth app needs a static MLFLOW_FLASK_SERVER_SECRET_KEY shared by every replica
    (mlflow/server/auth/__init__.py, get_flask_server_secret_key): one Secret for the Deployment; generated once
    (lookup) unless mlflow.auth.secretKeyExistingSecret names yours; absent without auth."""
    env = env_of(_mlflow_container(default))
    ref = env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": f"{RELEASE}-mlflow-server", "key": "MLFLOW_FLASK_SERVER_SECRET_KEY"}
    secret = default.get("Secret", f"{RELEASE}-mlflow-server", NAMESPACE)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    mine = render({"mlflow": {"auth": {"secretKeyExistingSecret": "my-key"}}})
    ref = env_of(_mlflow_container(mine))["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "my-key"
    assert not [s for s in mine.of_kind("Secret") if "MLFLOW_FLASK_SERVER_SECRET_KEY" in s["data"]]
    off = render({"mlflow": {"auth": {"enabled": False}}})
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" not in env_of(_mlflow_container(off))
    assert not [s for s in off.of_kind("Secret") if s["metadata"]["name"] == f"{RELEASE}-mlflow-server"]


def test_secrets_are_copied_to_a_separate_pipelines_namespace() -> None:
    r = render({"pipelines": {"namespace": "kubeflow"}})
    for name, keys in SECRET_KEYS.items():
        here, there = r.get("Secret", name, NAMESPACE), r.get("Secret", name, "kubeflow")
        assert here["data"] == there["data"] and set(there["data"]) == keys


# --------------------------------------------------------------------------------------------------- hardening


def test_every_pod_is_hardened(rendered: Rendering) -> None:
    specs = pod_templates(rendered)
    assert len(specs) >= 3
    for name, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0 and psc["runAsGroup"] > 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in containers(spec):
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where} {kind}"
            # a read-only root filesystem needs somewhere to write
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where} has no writable /tmp"


# volume types the `restricted` Pod Security Standard allows
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def test_writable_volumes_are_bounded_and_restricted(rendered: Rendering) -> None:
    for name, spec in pod_templates(rendered):
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        for vol in spec.get("volumes", []):
            kinds = set(vol) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{name}: volume {vol['name']} is {kinds}"
            if "emptyDir" in vol and vol["emptyDir"].get("medium") == "Memory":
                assert "sizeLimit" in vol["emptyDir"], f"{name}: memory volume {vol['name']} unbounded"


# --------------------------------------------------------------------------------------------- NetworkPolicies


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policies_isolate_the_services(rendered: Rendering) -> None:
    """The default deny and the labels the admitted pods carry; who reaches whom is the table in
    test_netpol_reachability.py (evaluated with Kubernetes' semantics by tests/netpol.py)."""
    policies = rendered.of_kind("NetworkPolicy")
    deny = next(p for p in policies if p["metadata"]["name"].endswith("-default-deny"))
    assert deny["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in deny["spec"]
    for name, labels in pod_labels(rendered):
        assert _selects(deny["spec"]["podSelector"], labels), f"{name} escapes the default deny"
    # the pods that must reach the services carry the client label
    for o in rendered.of_kind("ClusterTrainingRuntime"):
        for job in o["spec"]["template"]["spec"]["replicatedJobs"]:
            assert _selects({"matchLabels": CLIENT_LABEL}, job["template"]["spec"]["template"]["metadata"]["labels"])
    test_job = rendered.get("Job", f"{RELEASE}-test")
    assert _selects({"matchLabels": CLIENT_LABEL}, test_job["spec"]["template"]["metadata"]["labels"])


# ------------------------------------------------------------------------------------------------------ images


def test_third_party_images_are_pinned_by_digest_and_minio_comes_from_quay(rendered: Rendering) -> None:
    values = load_values(CHART / "values.yaml")
    thinkflow_repos = {
        rendered.values.get("images", {}).get(k, {}).get("repository", values["images"][k]["repository"])
        for k in ("base", "trainer")
    }
    images = set()
    for name, spec in pod_templates(rendered):
        for c in containers(spec):
            images.add(c["image"])
            if c["image"].split("@")[0].split(":")[0] in thinkflow_repos:
                continue
            assert re.fullmatch(r"[^@\s]+@sha256:[a-f0-9]{64}", c["image"]), (
                f"{name}/{c['name']}: {c['image']} not pinned"
            )
            assert c["imagePullPolicy"] == "IfNotPresent"
    if rendered.values.get("minio", {}).get("enabled", True):
        minio = rendered.get("StatefulSet", f"{RELEASE}-minio")["spec"]["template"]["spec"]["containers"][0]["image"]
        assert re.fullmatch(r"quay\.io/minio/minio@sha256:[a-f0-9]{64}", minio)
    assert not any(i.endswith(":latest") for i in images)


def test_thinkflow_images_follow_the_chart_version_and_digest(default: Rendering) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    mlflow = default.get("Deployment", f"{RELEASE}-mlflow")
    c = mlflow["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].endswith(f":{chart['appVersion']}") and c["imagePullPolicy"] == "Always"
    assert mlflow["metadata"]["annotations"]["checkov.io/skip1"].startswith("CKV_K8S_43=")
    digest = "sha256:" + "a" * 64
    pinned = render({"images": {"base": {"digest": digest}}}).get("Deployment", f"{RELEASE}-mlflow")
    c = pinned["spec"]["template"]["spec"]["containers"][0]
    assert c["image"].endswith(f"@{digest}") and c["imagePullPolicy"] == "IfNotPresent"
    assert "checkov.io/skip1" not in pinned["metadata"].get("annotations", {})


def test_versions_agree_with_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == pyproject["project"]["version"]
    pins = {}
    for dep in pyproject["project"]["dependencies"] + [
        d for ds in pyproject["project"]["optional-dependencies"].values() for d in ds
    ]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", dep.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    assert chart["annotations"]["thinkflow.io/kfp-version"] == pins["kfp"]
    assert chart["annotations"]["thinkflow.io/kubeflow-trainer-version"] == pins["kubeflow-trainer-api"]


# ------------------------------------------------------------------------------------------------------ MLflow


def _mlflow_container(r: Rendering) -> dict[str, Any]:
    return r.get("Deployment", f"{RELEASE}-mlflow")["spec"]["template"]["spec"]["containers"][0]


def test_mlflow_allowed_hosts_cover_the_service_dns_names(rendered: Rendering) -> None:
    from mlflow.server.security_utils import is_allowed_host_header

    args = _mlflow_container(rendered)["args"]
    hosts = next(a.split("=", 1)[1] for a in args if a.startswith("--allowed-hosts=")).split(",")
    assert "*" not in hosts
    svc = rendered.get("Service", f"{RELEASE}-mlflow")
    name, port = svc["metadata"]["name"], svc["spec"]["ports"][0]["port"]
    for host in (name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.cluster.local"):
        assert is_allowed_host_header(hosts, host), host
        assert is_allowed_host_header(hosts, f"{host}:{port}"), host
    assert is_allowed_host_header(hosts, "localhost:5000")  # kubectl port-forward
    assert not is_allowed_host_header(hosts, "evil.example.com")
    # the Host header pipeline pods send, from the tracking URI they are given
    env = rendered.get("ConfigMap", ENV_CONFIGMAP, rendered.pipelines_namespace)["data"]
    netloc = re.match(r"https?://([^/]+)", env[tf_env.MLFLOW_TRACKING_URI]).group(1)
    assert is_allowed_host_header(hosts, netloc)
    for extra in rendered.values.get("mlflow", {}).get("extraAllowedHosts", []):
        assert is_allowed_host_header(hosts, extra)
    # an explicit --allowed-hosts replaces MLflow's defaults (mlflow/server/security.py get_allowed_hosts): keep them,
    # in-cluster callers by pod IP need the private ranges
    from mlflow.server.security_utils import get_default_allowed_hosts

    assert set(get_default_allowed_hosts()) <= set(hosts)
    assert is_allowed_host_header(hosts, "10.42.3.7:5000")


def test_mlflow_cors_origins_are_the_ingress_hosts_and_the_service(rendered: Rendering) -> None:
    """MLflow blocks a state-changing API call whose Origin is not allowed (mlflow/server/security_utils.py,
    should_block_cors_request): the UI behind the Ingress sends Origin https://<host>."""
    from mlflow.server.security_utils import should_block_cors_request

    args = _mlflow_container(rendered)["args"]
    origins = next(a.split("=", 1)[1] for a in args if a.startswith("--cors-allowed-origins=")).split(",")
    assert "*" not in origins
    ingress = rendered.values.get("mlflow", {}).get("ingress", {})
    for host in ingress.get("hosts", []) if ingress.get("enabled") else []:
        assert not should_block_cors_request(f"https://{host}", "POST", origins), host
        assert should_block_cors_request(f"http://{host}", "POST", origins), host
    assert not should_block_cors_request(f"http://{RELEASE}-mlflow.{NAMESPACE}.svc:5000", "POST", origins)
    assert should_block_cors_request("https://evil.example.com", "POST", origins)
    if ingress.get("enabled"):
        ing = rendered.get("Ingress", f"{RELEASE}-mlflow")
        assert [r["host"] for r in ing["spec"]["rules"]] == ingress["hosts"]
        assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == f"{RELEASE}-mlflow"


def test_mlflow_probes_use_health(rendered: Rendering) -> None:
    c = _mlflow_container(rendered)
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health", probe
        assert c[probe]["httpGet"]["port"] in port_names, probe
    svc = rendered.get("Service", f"{RELEASE}-mlflow")
    assert svc["spec"]["ports"][0]["targetPort"] in port_names


def test_mlflow_backend_artifacts_and_auth(rendered: Rendering) -> None:
    c = _mlflow_container(rendered)
    env = env_of(c)
    assert "--serve-artifacts" in c["args"]
    bucket = rendered.values.get("s3", {}).get("bucket", "thinkflow")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"] == f"s3://{bucket}/mlflow"
    assert env["THINKFLOW_MLFLOW_AUTH"]["value"] == "true"
    assert "secretKeyRef" in env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]
    if rendered.values.get("postgres", {}).get("enabled", True):
        uri = env["MLFLOW_BACKEND_STORE_URI"]["value"]
        assert uri == (
            f"postgresql://mlflow:$(POSTGRES_PASSWORD)@{RELEASE}-postgres.{NAMESPACE}.svc.cluster.local:5432/mlflow"
        )
        # $(VAR) expansion needs POSTGRES_PASSWORD defined before it
        names = [e["name"] for e in c["env"]]
        assert names.index("POSTGRES_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
    start = rendered.get("ConfigMap", f"{RELEASE}-mlflow")["data"]["start.sh"]
    assert "--app-name basic-auth" in start and "exec mlflow server" in start


def test_mlflow_start_script_writes_a_valid_auth_config(default: Rendering, tmp_path: Path) -> None:
    """Run the chart's start script with a fake `mlflow` and read the auth config back as MLflow does."""
    script = default.get("ConfigMap", f"{RELEASE}-mlflow")["data"]["start.sh"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    script = script.replace("/run/thinkflow", str(run_dir))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mlflow"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\ncp "$MLFLOW_AUTH_CONFIG_PATH" "$INI_OUT"\n')
    fake.chmod(0o755)
    uri = "postgresql://mlflow:p%40ss@db:5432/mlflow"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "THINKFLOW_MLFLOW_AUTH": "true",
        "THINKFLOW_MLFLOW_DEFAULT_PERMISSION": "READ",
        "MLFLOW_BACKEND_STORE_URI": uri,
        "ARGS_OUT": str(tmp_path / "args"),
        "INI_OUT": str(tmp_path / "auth.ini"),
    }
    subprocess.run(["/bin/sh", "-c", script, "start.sh", "--host=0.0.0.0"], env=env, check=True, timeout=30)
    assert (tmp_path / "args").read_text().split() == ["server", "--app-name", "basic-auth", "--host=0.0.0.0"]
    assert oct((run_dir / "basic_auth.ini").stat().st_mode & 0o777) == "0o600"
    # read it the way mlflow.server.auth.config.read_auth_config does (ConfigParser, with interpolation)
    config = configparser.ConfigParser()
    config.read(tmp_path / "auth.ini")
    assert config["mlflow"]["database_uri"] == uri and config["mlflow"]["default_permission"] == "READ"
    assert config["mlflow"]["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"


# ---------------------------------------------------------------------------------------------- KFP wiring


def test_kfp_launcher_config_points_at_the_bucket(rendered: Rendering) -> None:
    pns = rendered.pipelines_namespace
    launcher = rendered.get("ConfigMap", "kfp-launcher", pns)
    bucket = rendered.values.get("s3", {}).get("bucket", "thinkflow")
    assert launcher["data"]["defaultPipelineRoot"] == f"s3://{bucket}/pipelines"
    providers = yaml.safe_load(launcher["data"]["providers"])
    default = providers["s3"]["default"]
    if rendered.values.get("minio", {}).get("enabled", True):
        assert default["endpoint"] == f"{RELEASE}-minio.{NAMESPACE}.svc.cluster.local:9000"
        assert default["disableSSL"] is True
    else:
        assert default["endpoint"] == "s3.eu-west-1.amazonaws.com" and default["disableSSL"] is False
        assert default["region"] == "eu-west-1"
    assert default["forcePathStyle"] is True
    assert default["credentials"] == {
        "fromEnv": False,
        "secretRef": {
            "secretName": S3_SECRET,
            "accessKeyKey": S3_ACCESS_KEY,
            "secretKeyKey": S3_SECRET_KEY,
        },
    }


def test_pipeline_pods_get_the_endpoints(rendered: Rendering) -> None:
    env = rendered.get("ConfigMap", ENV_CONFIGMAP, rendered.pipelines_namespace)["data"]
    assert env[tf_env.MLFLOW_TRACKING_URI] == f"http://{RELEASE}-mlflow.{NAMESPACE}.svc.cluster.local:5000"
    if rendered.values.get("minio", {}).get("enabled", True):
        s3 = f"http://{RELEASE}-minio.{NAMESPACE}.svc.cluster.local:9000"
    else:
        s3 = "https://s3.eu-west-1.amazonaws.com"
    assert env[tf_env.AWS_ENDPOINT_URL] == env["MLFLOW_S3_ENDPOINT_URL"] == s3
    for model in rendered.values.get("inference", {}).get("models", []):
        key = tf_env.TEACHER_BASE_URL.format(name=model["name"].upper())
        assert env[key] == f"http://{RELEASE}-{model['name']}.{NAMESPACE}.svc.cluster.local:8000/v1"
        rendered.get("Service", f"{RELEASE}-{model['name']}", NAMESPACE)


def test_reward_model_serves_the_scorer_protocol_to_grpo(production: Rendering, default: Rendering) -> None:
    """rewardModel: thinkflow serve-reward on a GPU, its URL in thinkflow-env, its token from a Secret that the
    training pods of the runtime also mount (the GRPO client reads THINKFLOW_REWARD_URL/_API_KEY)."""
    assert not [o for o in default.objects if o["metadata"]["name"].endswith("reward-model")]
    name = f"{RELEASE}-reward-model"
    env = production.get("ConfigMap", ENV_CONFIGMAP, production.pipelines_namespace)["data"]
    assert env[tf_env.REWARD_URL] == f"http://{name}.{NAMESPACE}.svc.cluster.local:8000/score"
    production.get("Service", name, NAMESPACE)
    pod = production.get("Deployment", name, NAMESPACE)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["thinkflow", "serve-reward"]
    assert "--kind=ixc2.5-reward" in container["args"] and f"--api-key-env={tf_env.REWARD_API_KEY}" in container["args"]
    (token,) = [e for e in container["env"] if e["name"] == tf_env.REWARD_API_KEY]
    assert token["valueFrom"]["secretKeyRef"] == {"name": REWARD_SECRET, "key": tf_env.REWARD_API_KEY}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    runtime = production.get("ClusterTrainingRuntime", "thinkflow-torch-distributed")
    assert "thinkflow-reward-model" in json.dumps(runtime)
    generated = render({"rewardModel": {"enabled": True, "source": {"uri": "s3://b/rm"}}})
    secret = generated.get("Secret", "thinkflow-reward-model", NAMESPACE)
    assert set(secret["data"]) == {tf_env.REWARD_API_KEY}


def test_launcher_configmap_can_be_left_to_kfp() -> None:
    r = render({"pipelines": {"launcher": {"create": False}}})
    assert [o for o in r.of_kind("ConfigMap") if o["metadata"]["name"] == "kfp-launcher"] == []
    notes = r.manifests["thinkflow/templates/NOTES.txt"]
    assert "defaultPipelineRoot: s3://thinkflow/pipelines" in notes and "secretName: thinkflow-s3" in notes


def test_trainjob_rbac_is_minimal(rendered: Rendering) -> None:
    pns = rendered.pipelines_namespace
    role = rendered.get("Role", f"{RELEASE}-trainjobs", pns)
    assert role["rules"] == [
        {
            "apiGroups": ["trainer.kubeflow.org"],
            "resources": ["trainjobs"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        }
    ]
    binding = rendered.get("RoleBinding", f"{RELEASE}-trainjobs", pns)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": f"{RELEASE}-trainjobs",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": pns}]
    assert rendered.of_kind("ClusterRole") == [] and rendered.of_kind("ClusterRoleBinding") == []


def test_gpu_workloads_schedule_on_the_gpu_pools(production: Rendering) -> None:
    gpu_specs = [
        (n, s)
        for n, s in pod_templates(production)
        if any(GPU_RESOURCE in c["resources"]["limits"] for c in s["containers"])
    ]
    assert {n.split("/")[1] for n, _ in gpu_specs} == {
        f"{RELEASE}-reward",
        f"{RELEASE}-reward-model",
        f"{RELEASE}-teacher",
        f"{RELEASE}-serving-champion",
        f"{RELEASE}-serving-challenger",
        "thinkflow-torch-distributed",
    }
    for name, spec in gpu_specs:
        assert spec["nodeSelector"] == {GPU_SELECTOR_KEY: "NVIDIA-H100-80GB-HBM3"}, name
        assert GPU_TOLERATION in spec["tolerations"], name
        shm = [v for v in spec["volumes"] if v["name"] == "dshm"]
        assert shm and shm[0]["emptyDir"]["medium"] == "Memory", name
    reward = production.get("Deployment", f"{RELEASE}-reward")["spec"]["template"]["spec"]
    assert reward["initContainers"][0]["args"] == [
        "s3://acme-thinkflow/models/Qwen2.5-VL-7B-Instruct",
        "/models/reward",
    ]
    vllm = reward["containers"][0]
    assert vllm["command"] == ["vllm", "serve"] and vllm["args"][0] == "/models/reward"
    assert vllm["env"][0]["valueFrom"]["secretKeyRef"] == {"name": TEACHERS_SECRET, "key": TEACHER_KEY}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert vllm[probe]["httpGet"]["path"] == "/health"
    teacher = production.get("Deployment", f"{RELEASE}-teacher")["spec"]["template"]["spec"]
    assert "initContainers" not in teacher and teacher["containers"][0]["args"][0] == "/models/Qwen2.5-VL-72B-Instruct"
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in teacher["volumes"]


# ----------------------------------------------------------------------------------------------- hooks, notes


def test_bucket_bootstrap_and_helm_test_hooks(default: Rendering, production: Rendering) -> None:
    job = default.get("Job", f"{RELEASE}-bucket-init")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    script = default.get("ConfigMap", f"{RELEASE}-bucket-init")["data"]["bootstrap.sh"]
    assert "mc mb --ignore-existing" in script.replace("$mc", "mc")
    policy = json.loads(default.get("ConfigMap", f"{RELEASE}-bucket-init")["data"]["policy.json"])
    assert {r for s in policy["Statement"] for r in s["Resource"]} == {
        "arn:aws:s3:::thinkflow",
        "arn:aws:s3:::thinkflow/*",
    }
    assert [o for o in production.of_kind("Job") if o["metadata"]["name"].endswith("bucket-init")] == []
    for r in (default, production):
        test = r.get("Job", f"{RELEASE}-test")
        assert test["metadata"]["annotations"]["helm.sh/hook"] == "test"
        mlflow, bucket = test["spec"]["template"]["spec"]["containers"]
        assert "/api/2.0/mlflow-artifacts/artifacts/" in mlflow["command"][2] and mlflow["command"][3].endswith(":5000")
        assert env_of(mlflow)[MLFLOW_PASSWORD_KEY]["valueFrom"]["secretKeyRef"]["name"] == MLFLOW_ADMIN_SECRET
        assert "mc pipe" in bucket["command"][2].replace("$mc", "mc")
        assert env_of(bucket)[S3_SECRET_KEY]["valueFrom"]["secretKeyRef"]["name"] == S3_SECRET


def test_notes_explain_access(rendered: Rendering) -> None:
    notes = rendered.manifests["thinkflow/templates/NOTES.txt"]
    assert f"port-forward svc/{RELEASE}-mlflow 5000:5000" in notes
    assert "pipelines/*.yaml" in notes and "thinkflow submit" in notes
    assert f"helm test {RELEASE}" in notes
    pns = rendered.pipelines_namespace
    assert f'Kubeflow Pipelines wiring: in namespace "{pns}"' in notes
    registry = rendered.values.get("images", {}).get("base", {}).get("repository", "ghcr.io/thinkflow/thinkflow-base")
    assert f"thinkflow compile --registry {registry.removesuffix('/thinkflow-base')} --tag 0.1.0" in notes
    for host in rendered.values.get("mlflow", {}).get("ingress", {}).get("hosts", []):
        assert f"https://{host}" in notes


# ------------------------------------------------------------------------------------- agreement with the code


def test_chart_agrees_with_the_pipelines_and_the_launcher(default: Rendering) -> None:
    """The names the pipelines and the TrainJob launcher use are the ones the chart creates."""
    images = pytest.importorskip("thinkflow.components.images")
    train_config = pytest.importorskip("thinkflow.train.config")
    values = load_values(CHART / "values.yaml")
    assert values["pipelines"]["envConfigMap"] == ENV_CONFIGMAP
    env = default.get("ConfigMap", ENV_CONFIGMAP, default.pipelines_namespace)["data"]
    assert set(CONFIG_MAP_KEYS) <= set(env)
    rm = render({"rewardModel": {"enabled": True, "source": {"uri": "s3://b/rm"}}})
    assert REWARD_URL_KEY in rm.get("ConfigMap", ENV_CONFIGMAP, rm.pipelines_namespace)["data"]
    for ns in (NAMESPACE, rm.pipelines_namespace):
        assert set(rm.get("Secret", REWARD_SECRET, ns)["data"]) == {REWARD_TOKEN_KEY}
    assert values["gpu"]["resource"] == ACCELERATOR
    assert {values["gpu"]["nodeSelectorKey"]: values["gpu"]["product"]} == GPU_NODE_SELECTOR
    assert values["gpu"]["tolerations"] == GPU_TOLERATIONS
    assert values["trainer"]["runtime"]["name"] == train_config.DEFAULT_RUNTIME
    for key in ("base", "trainer"):
        assert getattr(images, f"{key.upper()}_IMAGE") == f"{values['images'][key]['repository']}:{images.TAG}"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == images.TAG


def test_statefulsets_have_headless_services_and_disruption_budgets(default: Rendering) -> None:
    """Each StatefulSet is governed by a headless Service (stable pod DNS); PodDisruptionBudgets protect MLflow
    when it has replicas to spare, and the single-replica stores when asked (a drain then waits for you)."""
    for sts in default.of_kind("StatefulSet"):
        svc = default.get("Service", sts["spec"]["serviceName"], NAMESPACE)
        assert svc["spec"]["clusterIP"] == "None", sts["metadata"]["name"]
        assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert default.of_kind("PodDisruptionBudget") == []  # one MLflow replica, stores not asked
    r = render(
        {"mlflow": {"replicas": 2}, "minio": {"podDisruptionBudget": True}, "postgres": {"podDisruptionBudget": True}}
    )
    pdbs = {p["metadata"]["name"]: p["spec"] for p in r.of_kind("PodDisruptionBudget")}
    assert pdbs[f"{RELEASE}-mlflow"]["minAvailable"] == 1
    assert pdbs[f"{RELEASE}-minio"]["maxUnavailable"] == pdbs[f"{RELEASE}-postgres"]["maxUnavailable"] == 0
    for name, spec in pdbs.items():
        component = name.removeprefix(f"{RELEASE}-")
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == component


# ----------------------------------------------------------------------------------------------------- serving

SERVING_ALIASES = ("champion", "challenger")  # ci/production-values.yaml


def test_serving_is_off_by_default(default: Rendering) -> None:
    assert not [o for o in default.objects if re.search(r"-serving|serve-sync", o["metadata"]["name"])]


def test_serving_deployments_resolve_the_alias_and_roll_without_downtime(production: Rendering) -> None:
    """One vLLM Deployment per alias. vLLM rules encoded here (it cannot run on this machine):
    vllm/entrypoints/openai/api_server.py authenticates only paths under /v1 with ``args.api_key or
    envs.VLLM_API_KEY`` (so /health serves the probes and the key stays off the command line), and answers
    with the first --served-model-name in the response ``model`` field (vllm-project/vllm#2894)."""
    for alias in SERVING_ALIASES:
        name = f"{RELEASE}-serving-{alias}"
        dep = production.get("Deployment", name, NAMESPACE)
        assert dep["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        template = dep["spec"]["template"]
        assert template["metadata"]["annotations"] == {"thinkflow.io/model-version": ""}
        assert _selects({"matchLabels": CLIENT_LABEL}, template["metadata"]["labels"])  # reaches MLflow, MinIO
        spec = template["spec"]
        (init,) = spec["initContainers"]
        assert init["image"].startswith("registry.example.com/ml/thinkflow-base:")
        assert init["command"] == ["thinkflow", "serve-init"]
        sets = init["args"][1::2]
        assert sets == [f"model=models:/thinkflow-vlm@{alias}", "version=$(THINKFLOW_MODEL_VERSION)",
                        "cache_dir=/models/cache", "output_dir=/models/served"]  # fmt: skip
        env = env_of(init)
        assert env["THINKFLOW_MODEL_VERSION"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.annotations['thinkflow.io/model-version']"
        )
        assert env[tf_env.MLFLOW_TRACKING_URI]["value"] == f"http://{RELEASE}-mlflow.{NAMESPACE}.svc.cluster.local:5000"
        for key in SECRET_KEYS[MLFLOW_SECRET]:
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": MLFLOW_SECRET, "key": key}
        assert init["envFrom"] == [{"secretRef": {"name": S3_SECRET}}]
        (vllm,) = spec["containers"]
        script = vllm["args"][0]
        assert script.startswith("exec vllm serve /models/served/current")
        assert "--served-model-name \"$$(cat /models/served/served-model-name)\" 'thinkflow-vlm'" in script
        assert "--api-key" not in script
        assert env_of(vllm)["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "thinkflow-serving",
            "key": "API_KEY",
        }
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert vllm[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert vllm["resources"]["limits"][GPU_RESOURCE] == 1
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["cache"] == {"name": "cache", "persistentVolumeClaim": {"claimName": "thinkflow-model-cache"}}
        assert "emptyDir" in volumes["served"]  # per pod: what this pod serves
        svc = production.get("Service", name, NAMESPACE)
        assert svc["spec"]["selector"]["thinkflow.io/alias"] == alias and svc["spec"]["ports"][0]["port"] == 8000
    assert production.get("Deployment", f"{RELEASE}-serving-champion")["spec"]["replicas"] == 2
    (ingress,) = [i for i in production.of_kind("Ingress") if "serving" in i["metadata"]["name"]]
    assert ingress["metadata"]["name"] == f"{RELEASE}-serving-champion"
    assert ingress["spec"]["tls"] == [{"hosts": ["vlm.example.com"], "secretName": "vlm-example-com-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-serving-champion", "port": {"name": "http"}}


def test_serving_key_is_generated_when_not_given() -> None:
    r = render({"serving": {"enabled": True}})
    secret = r.get("Secret", f"{RELEASE}-serving", NAMESPACE)
    assert len(base64.b64decode(secret["data"]["API_KEY"])) == 40
    dep = r.get("Deployment", f"{RELEASE}-serving-champion")
    vllm = dep["spec"]["template"]["spec"]["containers"][0]
    assert env_of(vllm)["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == f"{RELEASE}-serving"
    assert "emptyDir" in {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}["cache"]
    assert r.of_kind("Ingress") == []


def test_serve_sync_rbac_config_and_token(production: Rendering) -> None:
    from thinkflow.serving.sync import SyncConfig

    name = f"{RELEASE}-serve-sync"
    deployments = [f"{RELEASE}-serving-{a}" for a in SERVING_ALIASES]
    role = production.get("Role", name, NAMESPACE)
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": deployments, "verbs": ["get", "patch"]}
    ]
    binding = production.get("RoleBinding", name, NAMESPACE)
    assert binding["roleRef"]["name"] == name
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    # the chart's config is a valid SyncConfig naming the rendered Deployments and their Services
    cfg = SyncConfig.model_validate(yaml.safe_load(production.get("ConfigMap", name)["data"]["serve-sync.yaml"]))
    assert [t.deployment for t in cfg.watch] == deployments and cfg.interval_s == 30 and cfg.namespace == NAMESPACE
    for target, alias in zip(cfg.watch, SERVING_ALIASES, strict=True):
        assert target.model == f"models:/thinkflow-vlm@{alias}"
        assert target.endpoint == f"http://{RELEASE}-serving-{alias}.{NAMESPACE}.svc.cluster.local:8000/v1"
        production.get("Service", target.deployment, NAMESPACE)
    spec = production.get("Deployment", name)["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == name and spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["command"] == ["thinkflow", "serve-sync", "--config", "/etc/thinkflow/serve-sync.yaml"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    token = {v["name"]: v for v in spec["volumes"]}[mounts["/var/run/secrets/kubernetes.io/serviceaccount"]]
    paths = {s.get("serviceAccountToken", {}).get("path") for s in token["projected"]["sources"]}
    assert "token" in paths  # what kubernetes.config.load_incluster_config reads
    assert env_of(container)[tf_env.SERVING_API_KEY]["valueFrom"]["secretKeyRef"]["name"] == "thinkflow-serving"


def test_serving_api_server_egress_can_be_pinned(production: Rendering) -> None:
    egress = production.get("NetworkPolicy", f"{RELEASE}-serve-sync")["spec"]["egress"]
    assert egress[-1] == {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}


def test_helm_test_smoke_requests_every_alias(production: Rendering) -> None:
    job = production.get("Job", f"{RELEASE}-test-serving")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    smoke = job["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in smoke] == [f"smoke-{a}" for a in SERVING_ALIASES]
    for c, alias in zip(smoke, SERVING_ALIASES, strict=True):
        assert c["command"] == ["thinkflow", "serve-smoke"]
        assert c["args"] == [
            f"--endpoint=http://{RELEASE}-serving-{alias}.{NAMESPACE}.svc.cluster.local:8000/v1",
            "--name=thinkflow-vlm",
            "--max-tokens=1024",
        ]


@pytest.mark.parametrize("preset", ["vlaa-distill-open", "vlaa-distill-paper"])
def test_in_cluster_teachers_of_a_build_preset_reach_the_code(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12 item 4: for every teacher of a cluster build preset that takes its endpoint from the environment,
    an `inference.models` entry named after it (servedModelName left to the chart's default) publishes the very
    env key the code reads in thinkflow-env (a URL to that entry's Service) and serves the preset's model id."""
    from thinkflow.config import load_config
    from thinkflow.data.build import BuildConfig

    cfg = load_config(BuildConfig, preset)
    in_cluster = {name: t for name, t in cfg.teachers if t is not None and t.base_url is None}
    assert in_cluster, f"{preset} has no in-cluster teacher"
    template = copy.deepcopy(load_values(PRODUCTION)["inference"]["models"][0])
    template.pop("servedModelName")
    models: dict[str, dict[str, Any]] = {}
    for t in in_cluster.values():
        assert t.base_url_env is not None
        m = re.fullmatch(r"THINKFLOW_([A-Z0-9_]+)_BASE_URL", t.base_url_env)
        assert m, f"{t.base_url_env} is not a key the chart publishes (THINKFLOW_<NAME>_BASE_URL)"
        name = m.group(1).lower().replace("_", "-")
        models[name] = {**template, "name": name}
    values = load_values(PRODUCTION)
    values["inference"] = {"enabled": True, "models": list(models.values())}
    r = render(values)
    env = r.get("ConfigMap", ENV_CONFIGMAP, r.pipelines_namespace)["data"]
    for teacher, t in in_cluster.items():
        name = next(
            n for n in models if t.base_url_env == tf_env.TEACHER_BASE_URL.format(name=n.upper().replace("-", "_"))
        )
        service = r.get("Service", f"{RELEASE}-{name}")
        port = service["spec"]["ports"][0]["port"]
        assert t.base_url_env in env, f"teacher {teacher}: {t.base_url_env} missing from {ENV_CONFIGMAP}"
        assert env[t.base_url_env] == f"http://{RELEASE}-{name}.{NAMESPACE}.svc.cluster.local:{port}/v1"
        monkeypatch.setenv(t.base_url_env, env[t.base_url_env])
        assert t.url() == env[t.base_url_env]
        deployment = r.get("Deployment", f"{RELEASE}-{name}")
        (vllm,) = [c for c in containers(deployment["spec"]["template"]["spec"]) if c["name"] == "vllm"]
        assert f"--served-model-name={t.model}" in vllm["args"], f"teacher {teacher}: {name} serves another model"


def test_presets_take_the_bucket_from_the_chart(rendered: Rendering, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12 item 9: thinkflow-env carries `s3.bucket` as THINKFLOW_BUCKET, and every shipped preset read where
    it is set names only that bucket (none of the presets' default `s3://thinkflow/` is left)."""
    from thinkflow.config import BUCKET_ENV, PRESET_BUCKET, preset_names, read_preset

    bucket = rendered.values.get("s3", {}).get("bucket") or load_values(CHART / "values.yaml")["s3"]["bucket"]
    env = rendered.get("ConfigMap", ENV_CONFIGMAP, rendered.pipelines_namespace)["data"]
    assert env[BUCKET_ENV] == bucket
    monkeypatch.setenv(BUCKET_ENV, "acme-ml")  # whatever the release names it
    moved = 0
    for name in preset_names():
        text = json.dumps(read_preset(name))
        assert f"s3://{PRESET_BUCKET}/" not in text, name
        moved += text.count("s3://acme-ml/")
    assert moved >= 10  # the presets do name S3 locations
    monkeypatch.setenv(BUCKET_ENV, "s3://not-a-name")
    from thinkflow.config import ConfigError

    with pytest.raises(ConfigError, match="THINKFLOW_BUCKET='s3://not-a-name' is not an S3 bucket name"):
        read_preset("vlaa-distill-open")
