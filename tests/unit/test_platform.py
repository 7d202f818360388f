"""Cluster bootstrap (platform/): pins agree with pyproject.toml, and the GPU node pools, the Kueue flavor and
the chart's GPU settings agree with each other. Nothing is applied: no cluster here."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"
CHART_VALUES = yaml.safe_load((ROOT / "charts" / "thinkflow" / "values.yaml").read_text())
GPU = CHART_VALUES["gpu"]


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    out = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", dep.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def kustomizations() -> list[Path]:
    found = sorted(PLATFORM.rglob("kustomization.yaml"))
    assert len(found) >= 6
    return found


def remote_resources() -> dict[str, list[str]]:
    out = {}
    for k in kustomizations():
        data = yaml.safe_load(k.read_text())
        assert data["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and data["kind"] == "Kustomization", k
        for res in data.get("resources", []):
            if res.startswith(("https://", "github.com/")):
                out.setdefault(str(k.parent.relative_to(PLATFORM)), []).append(res)
            else:
                assert (k.parent / res).is_file(), f"{k}: missing {res}"
    return out


def test_remote_manifests_are_pinned_to_released_versions() -> None:
    remote = remote_resources()
    for where, urls in remote.items():
        for url in urls:
            assert not re.search(r"(ref=(master|main|latest)|/latest/|/master/|/main/)", url), (where, url)
            assert re.search(r"(\?ref=v?\d+\.\d+\.\d+$|/download/v\d+\.\d+\.\d+/)", url), (where, url)
    versions = pins()
    kfp = [u for u in remote["kfp/cluster-scoped"] + remote["kfp/install"] if "kubeflow/pipelines" in u]
    assert kfp and all(u.endswith(f"?ref={versions['kfp']}") for u in kfp)
    trainer = remote["trainer/manager"] + remote["trainer/runtimes"]
    assert all(u.endswith(f"?ref=v{versions['kubeflow-trainer-api']}") for u in trainer)
    assert any("overlays/manager" in u for u in trainer) and any("overlays/runtimes" in u for u in trainer)
    assert any("kubernetes-sigs/kueue/releases/download/" in u for u in remote["kueue/install"])
    readme = (PLATFORM / "README.md").read_text()
    assert f"| {versions['kfp']} (= the `kfp` SDK pin)" in readme
    assert f"v{versions['kubeflow-trainer-api']} (= the `kubeflow-trainer-api` pin)" in readme


def test_kfp_install_leaves_the_launcher_configmap_to_the_chart() -> None:
    data = yaml.safe_load((PLATFORM / "kfp" / "install" / "kustomization.yaml").read_text())
    (patch,) = data["patches"]
    assert patch["target"] == {"version": "v1", "kind": "ConfigMap", "name": "kfp-launcher"}
    body = yaml.safe_load(patch["patch"])
    assert body["$patch"] == "delete" and body["metadata"]["name"] == "kfp-launcher"


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator", "Equal") == "Exists" and t.get("key") in (None, taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value") == taint.get("value"):
            return True
    return False


GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def test_chart_tolerates_the_gpu_taint() -> None:
    assert GPU["resource"] == "nvidia.com/gpu" and GPU["nodeSelectorKey"] == "nvidia.com/gpu.product"
    assert tolerates(GPU["tolerations"], GPU_TAINT)


def test_karpenter_nodepool_matches_the_pipelines_and_the_chart() -> None:
    objs = {d["kind"]: d for d in docs(PLATFORM / "nodepools" / "karpenter-gpu-nodepool.yaml")}
    pool, node_class = objs["NodePool"], objs["EC2NodeClass"]
    assert pool["apiVersion"] == "karpenter.sh/v1" and node_class["apiVersion"] == "karpenter.k8s.aws/v1"
    template = pool["spec"]["template"]
    assert template["metadata"]["labels"][GPU["nodeSelectorKey"]] == GPU["product"]
    assert template["spec"]["taints"] == [GPU_TAINT]
    for taint in template["spec"]["taints"]:
        assert tolerates(GPU["tolerations"], taint)
    ref = template["spec"]["nodeClassRef"]
    assert (ref["group"], ref["kind"], ref["name"]) == (
        "karpenter.k8s.aws",
        "EC2NodeClass",
        node_class["metadata"]["name"],
    )
    assert GPU["resource"] in pool["spec"]["limits"]
    assert all(m["ebs"]["encrypted"] for m in node_class["spec"]["blockDeviceMappings"])
    assert node_class["spec"]["metadataOptions"]["httpTokens"] == "required"


def test_gke_nodepool_script_creates_the_labelled_pool(tmp_path: Path) -> None:
    script = PLATFORM / "nodepools" / "gke-gpu-nodepool.sh"
    assert os.access(script, os.X_OK)
    log = tmp_path / "gcloud.log"
    fake = tmp_path / "gcloud"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    usage = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "CLUSTER LOCATION" in usage.stdout
    subprocess.run([str(script), "c1", "us-central1", "pool-a", "3"], env=env, check=True, timeout=30)
    args = log.read_text().splitlines()
    assert args[:4] == ["container", "node-pools", "create", "pool-a"]
    opt = {args[i]: args[i + 1] for i in range(4, len(args) - 1) if args[i].startswith("--")}
    assert opt["--cluster"] == "c1" and opt["--location"] == "us-central1" and opt["--max-nodes"] == "3"
    labels = dict(kv.split("=", 1) for kv in opt["--node-labels"].split(","))
    assert labels[GPU["nodeSelectorKey"]] == GPU["product"]
    assert "count=8" in opt["--accelerator"] and "gpu-driver-version=latest" in opt["--accelerator"]


def test_kueue_flavor_and_queues_match_the_gpu_pools() -> None:
    objs = docs(PLATFORM / "kueue" / "queues" / "gpu-queues.yaml")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for o in objs:
        assert o["apiVersion"] == "kueue.x-k8s.io/v1beta2", o["kind"]
        by_kind.setdefault(o["kind"], []).append(o)
    (flavor,) = by_kind["ResourceFlavor"]
    (cq,) = by_kind["ClusterQueue"]
    (lq,) = by_kind["LocalQueue"]
    assert flavor["spec"]["nodeLabels"] == {GPU["nodeSelectorKey"]: GPU["product"]}
    assert flavor["spec"]["nodeTaints"] == [GPU_TAINT]
    assert tolerates(flavor["spec"]["tolerations"], GPU_TAINT)
    karpenter = next(d for d in docs(PLATFORM / "nodepools" / "karpenter-gpu-nodepool.yaml") if d["kind"] == "NodePool")
    assert (
        karpenter["spec"]["template"]["metadata"]["labels"][GPU["nodeSelectorKey"]]
        == flavor["spec"]["nodeLabels"][GPU["nodeSelectorKey"]]
    )
    (group,) = cq["spec"]["resourceGroups"]
    assert GPU["resource"] in group["coveredResources"]
    for fl in group["flavors"]:
        assert fl["name"] == flavor["metadata"]["name"]
        assert [r["name"] for r in fl["resources"]] == group["coveredResources"]
    gpu_quota = next(r["nominalQuota"] for r in group["flavors"][0]["resources"] if r["name"] == GPU["resource"])
    assert gpu_quota == karpenter["spec"]["limits"][GPU["resource"]]  # quota = the pool's size
    assert lq["spec"]["clusterQueue"] == cq["metadata"]["name"]
    assert cq["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == lq["metadata"]["namespace"]


def test_gpu_operator_values_label_and_expose_the_gpus() -> None:
    values = yaml.safe_load((PLATFORM / "gpu-operator" / "values.yaml").read_text())
    assert values["devicePlugin"]["enabled"] and values["gfd"]["enabled"] and values["nfd"]["enabled"]
    assert tolerates(values["daemonsets"]["tolerations"], GPU_TAINT)
    eks = yaml.safe_load((PLATFORM / "gpu-operator" / "values-eks.yaml").read_text())
    assert eks == {"driver": {"enabled": False}, "toolkit": {"enabled": False}}
    readme = (PLATFORM / "README.md").read_text() + (PLATFORM / "gpu-operator" / "values.yaml").read_text()
    versions = set(re.findall(r"nvidia/gpu-operator --version (v[\d.]+)", readme))
    assert len(versions) == 1, versions


def test_manifests_with_a_kubernetes_schema_validate_strictly() -> None:
    checked = 0
    for path in sorted(PLATFORM.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or "gpu-operator" in path.parts:
            continue  # kustomize and Helm inputs, not Kubernetes objects
        for obj in docs(path):
            group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
            if group.endswith((".x-k8s.io", "karpenter.sh", "karpenter.k8s.aws")):
                continue  # custom resources: checked field by field above
            for version in ("1.30.0", kubernetes_validate.utils.latest_version()):
                kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked >= 1


def test_thinkflow_namespace_enforces_the_restricted_pod_security_standard() -> None:
    (ns,) = docs(PLATFORM / "namespaces" / "thinkflow.yaml")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
