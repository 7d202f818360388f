"""Who can reach whom under the chart's NetworkPolicies: a table of (from pod, to pod, port) -> allowed/denied,
evaluated with Kubernetes' NetworkPolicy semantics (tests/netpol.py) over the rendered default, production and
inference-enabled values.

The pods are the ones the rendering creates (their real labels and named ports), plus the pods other software
creates with the labels it gives them: a KFP v2 pipeline pod (KFP labels every v2 pod
``pipelines.kubeflow.org/v2_component=true``; our packages add `PipelineOptions.pod_labels`), a TrainJob pod (the
chart's ClusterTrainingRuntime template, or the client label the launcher's runtime must carry), the ingress
controller, and strangers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netpol import Cluster, Pod, pods_of

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is in the [dev] extras")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "thinkflow"
RELEASE, NS = "thinkflow", "thinkflow"
INGRESS_NS = "ingress-nginx"
INFERENCE = {
    "inference": {
        "enabled": True,
        "models": [
            {
                "name": "reward",
                "servedModelName": "Qwen2.5-VL-7B-Instruct",
                "source": {"uri": "s3://thinkflow/models/Qwen2.5-VL-7B-Instruct"},
                "gpus": 1,
                "resources": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"cpu": "8", "memory": "64Gi"}},
            },
            {
                "name": "teacher",
                "servedModelName": "Qwen2.5-VL-72B-Instruct",
                "source": {"pvc": {"claimName": "models", "subPath": "Qwen2.5-VL-72B-Instruct"}},
                "gpus": 4,
                "resources": {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"cpu": "16", "memory": "128Gi"}},
            },
        ],
    },
    "trainer": {"runtime": {"enabled": True}},
    # the registry's champion served (issue 15) and GRPO's reward model (issue 11), next to the bundled MinIO
    "serving": {
        "enabled": True,
        "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_NS}}}],
    },
    "rewardModel": {"enabled": True, "source": {"uri": "s3://thinkflow/models/reward"}},
}
CASES = {
    "default": {},
    "production": yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text()),
    "inference": INFERENCE,
}


class World:
    """A rendering's policies and every pod that talks to (or must not talk to) the release."""

    def __init__(self, values: dict[str, Any]) -> None:
        with helm.Chart.load(CHART) as chart:
            manifests = chart.render(values, name=RELEASE, namespace=NS, is_install=True)
        objects = [
            d
            for path, text in manifests.items()
            if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text)
            if d
        ]
        defaults = yaml.safe_load((CHART / "values.yaml").read_text())
        self.pns = values.get("pipelines", {}).get("namespace", defaults["pipelines"]["namespace"]) or NS
        self.cluster = Cluster(objects, {INGRESS_NS: {"team": "platform"}})
        self.pods = pods_of(objects, default_namespace=self.pns)
        self.objects = objects
        from thinkflow.pipelines.common import PipelineOptions

        kfp_labels = {"pipelines.kubeflow.org/v2_component": "true", **PipelineOptions().pod_labels}
        self.pods["pipeline"] = Pod("pipeline", self.pns, kfp_labels)
        runtime = [n for n in self.pods if "/" in n]  # ClusterTrainingRuntime replicated jobs
        if runtime:
            self.pods["trainjob"] = self.pods[runtime[0]]
        self.pods["ingress-controller"] = Pod(
            "ingress-controller", INGRESS_NS, {"app.kubernetes.io/name": "ingress-nginx"}
        )
        self.pods["stranger"] = Pod("stranger", NS, {"app": "something-else"})
        self.pods["stranger-pipelines-ns"] = Pod("stranger-pipelines-ns", self.pns, {"app": "notebook"})
        self.pods["kfp-pod-elsewhere"] = Pod("kfp-pod-elsewhere", "team-b", kfp_labels)
        # A pod impersonating a component label from another namespace must not pass as that component.
        self.pods["fake-mlflow-elsewhere"] = Pod(
            "fake-mlflow-elsewhere", "team-b", dict(self.pods[f"{RELEASE}-mlflow"].labels)
        )

    def has(self, name: str) -> bool:
        return name in self.pods

    def allowed(self, src: str, dest: str, port: int | str) -> bool:
        return self.cluster.allowed(self.pods[src], self.pods[dest], port)


@pytest.fixture(scope="module", params=sorted(CASES))
def world(request: pytest.FixtureRequest) -> tuple[str, World]:
    return request.param, World(CASES[request.param])


M, MINIO, PG = f"{RELEASE}-mlflow", f"{RELEASE}-minio", f"{RELEASE}-postgres"
REWARD, TEACHER, TEST, BUCKET = f"{RELEASE}-reward", f"{RELEASE}-teacher", f"{RELEASE}-test", f"{RELEASE}-bucket-init"
RM = f"{RELEASE}-reward-model"  # `rewardModel`: thinkflow serve-reward
USERS = f"{RELEASE}-mlflow-users"  # the hook Job that creates the pipelines' MLflow user (issue 12 item 10)
SERVE, SYNC, TEST_SERVING = f"{RELEASE}-serving-champion", f"{RELEASE}-serve-sync", f"{RELEASE}-test-serving"

# (from, to, port) -> allowed. Ports are the destination's named container ports (or a number). Rows whose pods a
# value set does not create (no MinIO with external S3, no inference by default...) are skipped for it.
TABLE: list[tuple[str, str, int | str, bool, str]] = [
    # what a pipeline needs
    ("pipeline", M, "http", True, "tracking, registry, proxied artifacts"),
    ("pipeline", MINIO, "api", True, "datasets, checkpoints, KFP artifacts"),
    ("pipeline", REWARD, "http", True, "GRPO's open-ended reward, evaluation's judge"),
    ("pipeline", TEACHER, "http", True, "build: captions, reasoning"),
    # what a TrainJob needs
    ("trainjob", M, "http", True, "training runs log to MLflow"),
    ("trainjob", MINIO, "api", True, "data and checkpoints"),
    ("trainjob", REWARD, "http", True, "GRPO's open-ended reward"),
    # inference / the reward model: weights from the bucket (issue 12 §5)
    (REWARD, MINIO, "api", True, "the init container downloads the weights"),
    (TEACHER, MINIO, "api", True, "a model server may fetch from the bucket"),
    # the reward model (`rewardModel`, thinkflow serve-reward)
    ("pipeline", RM, "http", True, "GRPO's open-ended reward"),
    ("trainjob", RM, "http", True, "GRPO's open-ended reward"),
    (RM, MINIO, "api", True, "the init container downloads the weights"),
    ("stranger", RM, "http", False, "unlabelled pod in the release namespace"),
    ("ingress-controller", RM, "http", False, "the reward model is internal"),
    # serving the champion (issue 15): the init container resolves the alias in MLflow and fetches the weights
    (SERVE, M, "http", True, "serve-init resolves models:/NAME@ALIAS"),
    (SERVE, MINIO, "api", True, "serve-init downloads the version's weights"),
    ("ingress-controller", SERVE, "http", True, "clients through the Ingress (serving.ingressFrom)"),
    (SYNC, SERVE, "http", True, "serve-sync's smoke request to the new pods"),
    (SYNC, M, "http", True, "serve-sync polls the aliases, tags served_at / serving_failed"),
    (TEST_SERVING, SERVE, "http", True, "helm test's smoke request"),
    ("pipeline", SERVE, "http", True, "pipeline pods may call the served model"),
    ("stranger", SERVE, "http", False, "unlabelled pod in the release namespace"),
    ("kfp-pod-elsewhere", SERVE, "http", False, "KFP pods of another namespace"),
    (SYNC, MINIO, "api", False, "serve-sync needs no weights"),
    (SYNC, PG, "postgres", False, "only MLflow talks to the database"),
    (SERVE, PG, "postgres", False, "only MLflow talks to the database"),
    # the services among themselves
    (M, MINIO, "api", True, "artifact proxy"),
    (M, PG, "postgres", True, "backend store"),
    (BUCKET, MINIO, "api", True, "bucket bootstrap"),
    (USERS, M, "http", True, "the hook Job creates the pipelines' MLflow user and its grants"),
    (USERS, PG, "postgres", False, "only MLflow talks to the database"),
    # helm test
    (TEST, M, "http", True, "authenticated API call, artifact round trip"),
    (TEST, MINIO, "api", True, "bucket write/read/delete"),
    # the ingress (production: mlflow.ingress on, controller in ingress-nginx)
    ("ingress-controller", M, "http", True, "the MLflow UI through the Ingress"),
    # must stay closed
    ("ingress-controller", MINIO, "api", False, "the controller serves MLflow only"),
    ("ingress-controller", REWARD, "http", False, "the controller serves MLflow only"),
    ("ingress-controller", PG, "postgres", False, "database"),
    ("stranger", M, "http", False, "unlabelled pod in the release namespace"),
    ("stranger", MINIO, "api", False, "unlabelled pod in the release namespace"),
    ("stranger", PG, "postgres", False, "unlabelled pod in the release namespace"),
    ("stranger", REWARD, "http", False, "unlabelled pod in the release namespace"),
    ("stranger-pipelines-ns", M, "http", False, "an unlabelled pod next to the pipelines"),
    ("stranger-pipelines-ns", MINIO, "api", False, "an unlabelled pod next to the pipelines"),
    ("kfp-pod-elsewhere", M, "http", False, "KFP pods of another namespace"),
    ("kfp-pod-elsewhere", MINIO, "api", False, "KFP pods of another namespace"),
    ("fake-mlflow-elsewhere", MINIO, "api", False, "component labels count in the release namespace only"),
    ("fake-mlflow-elsewhere", PG, "postgres", False, "component labels count in the release namespace only"),
    ("pipeline", PG, "postgres", False, "only MLflow talks to the database"),
    ("trainjob", PG, "postgres", False, "only MLflow talks to the database"),
    (TEST, PG, "postgres", False, "only MLflow talks to the database"),
    (REWARD, PG, "postgres", False, "only MLflow talks to the database"),
    (REWARD, M, "http", False, "model servers need no tracking"),
    (REWARD, TEACHER, "http", False, "model servers do not call each other"),
    (BUCKET, M, "http", False, "the bootstrap Job only needs MinIO"),
    ("pipeline", MINIO, "console", False, "the MinIO console is for port-forward only"),
    (M, MINIO, "console", False, "the MinIO console is for port-forward only"),
]


def _applies(w: World, src: str, dest: str, case: str) -> bool:
    if not (w.has(src) and w.has(dest)):
        return False
    if src == "ingress-controller" and dest == M:
        return bool(w.objects and any(o["kind"] == "Ingress" for o in w.objects))
    return True


@pytest.mark.parametrize(
    ("src", "dest", "port", "expected", "why"), TABLE, ids=[f"{s}->{d}:{p}" for s, d, p, *_ in TABLE]
)
def test_reachability(world: tuple[str, World], src: str, dest: str, port: int | str, expected: bool, why: str) -> None:
    case, w = world
    if not _applies(w, src, dest, case):
        missing = src if not w.has(src) else dest if not w.has(dest) else "Ingress"
        pytest.skip(f"{case}: no {missing} in this rendering")
    assert w.allowed(src, dest, port) is expected, f"{case}: {src} -> {dest}:{port} should be {expected} ({why})"


def test_every_row_runs_somewhere() -> None:
    """No row of the table is skipped by all three value sets (the table covers real paths)."""
    worlds = {case: World(values) for case, values in CASES.items()}
    for src, dest, port, _expected, _why in TABLE:
        assert any(_applies(w, src, dest, c) for c, w in worlds.items()), (src, dest, port)
    # and the value sets differ where they should
    assert worlds["production"].pns == "kubeflow" and worlds["default"].pns == "kubeflow"
    assert not worlds["production"].has(MINIO) and worlds["inference"].has(REWARD)


def test_every_release_pod_is_isolated(world: tuple[str, World]) -> None:
    """The default deny: every pod the chart runs is selected for Ingress by some policy."""
    case, w = world
    ours = [
        p
        for n, p in w.pods.items()
        if p.namespace == NS and p.labels.get("app.kubernetes.io/instance") == RELEASE and "/" not in n
    ]
    assert ours, case
    for pod in ours:
        assert w.cluster.isolated(pod, "Ingress"), f"{case}: {pod.name} accepts everything"
