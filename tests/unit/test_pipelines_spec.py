"""The compiled packages: no drift from the source, valid PipelineSpecs, and the cluster settings where
they should be (GPU resources, node selectors, tolerations, /dev/shm, workspace PVC, retries, secret and
ConfigMap references, caching) with no secret value anywhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from thinkflow.components import images
from thinkflow.pipelines import PIPELINES, build, compile_all, load_package
from thinkflow.pipelines.common import (
    CONFIG_MAP_KEYS,
    GPU_NODE_SELECTOR,
    GPU_TOLERATIONS,
    MLFLOW_KEYS,
    REWARD_COMPONENTS,
    REWARD_TOKEN_KEY,
    REWARD_URL_KEY,
    S3_KEYS,
    TEACHER_COMPONENTS,
    TEACHER_KEYS,
    PipelineOptions,
    options_for_images,
)

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "pipelines"
GPU_EXECUTORS = {"sft", "grpo", "evaluate"}
TRAINING = {"sft", "grpo"}
RETRIED = TRAINING | {"build_shard"}  # resume from their journals/checkpoints in the workspace


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    compile_all(out)
    return out


def docs(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, platform = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    return spec, platform


def executor_component(name: str) -> str:
    """``exec-grpo-2`` -> ``grpo``; ``exec-build-dataset`` -> ``build_dataset``."""
    return re.sub(r"-\d+$", "", name.removeprefix("exec-")).replace("-", "_")


def executors(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return spec["deploymentSpec"]["executors"]


def all_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of every DAG (root and sub-DAGs), by task name."""
    tasks: dict[str, dict[str, Any]] = {}
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        tasks.update(dag.get("tasks", {}))
    return tasks


@pytest.mark.parametrize("name", list(PIPELINES))
def test_committed_package_matches_source(compiled: Path, name: str) -> None:
    committed = COMMITTED / f"{name}.yaml"
    assert committed.is_file(), f"{committed} missing: run `thinkflow compile -o pipelines`"
    fresh = (compiled / f"{name}.yaml").read_text(encoding="utf-8")
    assert committed.read_text(encoding="utf-8") == fresh, (
        f"{committed} is out of date with the source: run `thinkflow compile -o pipelines` and commit it"
    )


@pytest.mark.parametrize("name", list(PIPELINES))
def test_package_is_a_valid_pipeline_spec(compiled: Path, name: str) -> None:
    from kfp import components

    spec, platform = load_package(compiled / f"{name}.yaml")
    assert spec.pipeline_info.name == build(name).name
    assert spec.schema_version == "2.1.0"
    assert platform is not None and "kubernetes" in platform.platforms
    # KFP itself loads it back as a component (what the UI upload and kfp.Client do with the file).
    loaded = components.load_component_from_file(str(compiled / f"{name}.yaml"))
    assert set(loaded.component_spec.inputs or {}) == set(build(name).component_spec.inputs or {})


@pytest.mark.parametrize("name", list(PIPELINES))
def test_gpu_tasks_request_accelerators_from_parameters(compiled: Path, name: str) -> None:
    spec, _ = docs(compiled / f"{name}.yaml")
    seen = set()
    for exec_name, executor in executors(spec).items():
        comp = executor_component(exec_name)
        resources = executor["container"].get("resources", {})
        if comp in GPU_EXECUTORS:
            seen.add(comp)
            acc = resources["accelerator"]
            assert "pipelinechannel--accelerator" in acc["resourceType"]
            gpus = "gpus_per_task" if comp in TRAINING else "eval_gpus"
            assert f"pipelinechannel--{gpus}" in acc["resourceCount"]
            prefix = "train" if comp in TRAINING else "eval"
            assert f"pipelinechannel--{prefix}_cpu" in resources["resourceCpuLimit"]
            assert f"pipelinechannel--{prefix}_memory" in resources["resourceMemoryLimit"]
            assert executor["container"]["image"] == images.TRAINER_IMAGE
        else:
            assert "accelerator" not in resources, f"{exec_name} is a CPU task"
            assert resources["resourceCpuLimit"] and resources["resourceMemoryLimit"]
            assert executor["container"]["image"] == images.BASE_IMAGE
    assert {"grpo", "evaluate"} <= seen
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["accelerator"]["defaultValue"] == "nvidia.com/gpu"
    assert params["gpu_node_selector"]["defaultValue"] == GPU_NODE_SELECTOR
    assert params["gpu_tolerations"]["defaultValue"] == GPU_TOLERATIONS


@pytest.mark.parametrize("name", list(PIPELINES))
def test_node_selector_tolerations_shm_on_gpu_tasks_only(compiled: Path, name: str) -> None:
    _, platform = docs(compiled / f"{name}.yaml")
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for exec_name, cfg in k8s.items():
        comp = executor_component(exec_name)
        if comp in GPU_EXECUTORS:
            assert cfg["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("gpu_node_selector")
            assert [t["tolerationJson"]["componentInputParameter"] for t in cfg["tolerations"]] == [
                "pipelinechannel--gpu_tolerations"
            ]
            shm = cfg["emptyDirMounts"]
            size = PipelineOptions().shm_size
            assert shm == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": size, "volumeName": "dshm"}]
        else:
            assert "nodeSelector" not in cfg and "tolerations" not in cfg and "emptyDirMounts" not in cfg


@pytest.mark.parametrize("name", list(PIPELINES))
def test_workspace_pvc_and_retries(compiled: Path, name: str) -> None:
    spec, platform = docs(compiled / f"{name}.yaml")
    workspace = platform["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]
    opts = PipelineOptions()
    assert workspace["size"] == opts.workspace_size
    assert workspace["kubernetes"]["pvcSpecPatch"]["accessModes"] == list(opts.workspace_access_modes)
    retried = set()
    for task_name, task in all_tasks(spec).items():
        comp = executor_component("exec-" + task["componentRef"]["name"].removeprefix("comp-"))
        policy = task.get("retryPolicy")
        if comp in RETRIED:
            assert policy == {
                "backoffDuration": opts.backoff_duration,
                "backoffFactor": opts.backoff_factor,
                "backoffMaxDuration": opts.backoff_max_duration,
                "maxRetryCount": opts.retries,
            }, task_name
            retried.add(comp)
        else:
            assert policy is None, f"{task_name} should not retry"
    assert "grpo" in retried
    assert ("build_shard" in retried) == (name == "vlaa_thinker")
    # Training tasks get the workspace (checkpoints) through the placeholder KFP resolves to the PVC mount.
    for comp in ("comp-grpo", "comp-open-run"):
        workspace_param = spec["components"][comp]["inputDefinitions"]["parameters"]["workspace"]
        assert workspace_param["defaultValue"] == "{{$.workspace_path}}"


@pytest.mark.parametrize("name", list(PIPELINES))
def test_secrets_and_config_map_are_references(compiled: Path, name: str) -> None:
    _, platform = docs(compiled / f"{name}.yaml")
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    opts = PipelineOptions()
    for exec_name, cfg in k8s.items():
        comp = executor_component(exec_name)
        secrets: dict[str, list[dict[str, Any]]] = {}
        for ref in cfg["secretAsEnv"]:
            secrets.setdefault(ref["secretName"], []).append(ref)
        (s3,) = secrets[opts.s3_secret]
        assert s3["optional"] is False
        assert {m["secretKey"] for m in s3["keyToEnv"]} == set(S3_KEYS)
        (mlflow,) = secrets[opts.mlflow_secret]
        assert {m["envVar"] for m in mlflow["keyToEnv"]} == set(MLFLOW_KEYS) and mlflow["optional"] is True
        optional_maps = [cm for cm in cfg["configMapAsEnv"] if cm.get("optional")]
        optional = {m["envVar"]: cm["configMapName"] for cm in optional_maps for m in cm["keyToEnv"]}
        if comp in TEACHER_COMPONENTS:  # API keys from the teachers' Secret, endpoints from thinkflow-env
            teachers = [m for ref in secrets[opts.teachers_secret] for m in ref["keyToEnv"]]
            assert {m["secretKey"] for m in teachers} == set(TEACHER_KEYS)
            assert {m["envVar"] for m in teachers} == set(opts.teacher_key_envs)
            assert all(ref["optional"] is True for ref in secrets[opts.teachers_secret])
            assert {k: optional.pop(k) for k in opts.teacher_url_envs} == dict.fromkeys(
                opts.teacher_url_envs, opts.env_config_map
            )
        else:
            assert opts.teachers_secret not in secrets
        required = [cm for cm in cfg["configMapAsEnv"] if not cm.get("optional")]
        (cm,) = required
        assert cm["configMapName"] == opts.env_config_map
        assert {m["envVar"] for m in cm["keyToEnv"]} == set(CONFIG_MAP_KEYS)
        if comp in REWARD_COMPONENTS:  # the chart's rewardModel: URL from thinkflow-env, token from its Secret
            assert optional == {REWARD_URL_KEY: opts.env_config_map}
            (token,) = secrets[opts.reward_secret]
            assert token["optional"] is True
            assert token["keyToEnv"] == [{"secretKey": REWARD_TOKEN_KEY, "envVar": REWARD_TOKEN_KEY}]
        else:
            assert not optional and opts.reward_secret not in secrets
        assert cfg["podMetadata"]["labels"] == opts.pod_labels


def test_every_teacher_endpoint_of_the_shipped_presets_reaches_the_tasks() -> None:
    """The build presets name their teachers' endpoints by environment variable (``base_url_env``, published by the
    chart's thinkflow-env ConfigMap); each of them is mapped into the tasks that call the teachers."""
    from thinkflow.config import preset_names, read_preset

    named = {
        teacher["base_url_env"]
        for preset in preset_names()
        for teacher in (read_preset(preset).get("teachers") or {}).values()
        if isinstance(teacher, dict) and teacher.get("base_url_env")
    }
    assert named and named <= set(PipelineOptions().teacher_url_envs)


@pytest.mark.parametrize("name", list(PIPELINES))
def test_no_secret_value_in_the_package(compiled: Path, name: str) -> None:
    text = (compiled / f"{name}.yaml").read_text(encoding="utf-8")
    spec, _ = docs(compiled / f"{name}.yaml")
    # No environment variable of a container carries a credential; credentials only as secret references.
    for executor in executors(spec).values():
        for env in executor["container"].get("env", []):
            assert env["name"] not in {*S3_KEYS, *MLFLOW_KEYS, *TEACHER_KEYS, *PipelineOptions().teacher_key_envs}
    assert not re.search(r"(?i)(password|secret_access_key|api_key)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}", text)
    for key in (*S3_KEYS, *MLFLOW_KEYS, *TEACHER_KEYS, *PipelineOptions().teacher_key_envs):
        # Every mention of a credential name is a secretKey/envVar mapping in the platform spec.
        for line in text.splitlines():
            if key in line and not line.strip().startswith("#"):
                assert re.fullmatch(rf"\s*-?\s*(envVar|secretKey): {key}", line), line


@pytest.mark.parametrize("name", list(PIPELINES))
def test_caching_policy(compiled: Path, name: str) -> None:
    spec, _ = docs(compiled / f"{name}.yaml")
    opts = PipelineOptions()
    for task_name, task in all_tasks(spec).items():
        ref = task.get("componentRef", {}).get("name", "")
        comp = executor_component("exec-" + ref.removeprefix("comp-"))
        if comp.startswith(("condition", "for_loop", "exit_handler")):
            continue
        expected = opts.cache.get(comp, False)
        assert task["cachingOptions"].get("enableCache", False) is expected, task_name


def test_study_fans_out_with_parallel_for_and_collects(compiled: Path) -> None:
    spec, _ = docs(compiled / "sft_vs_rl_study.yaml")
    loops = [t for t in all_tasks(spec).values() if "parameterIterator" in t]
    assert len(loops) == 1
    assert loops[0]["parameterIterator"]["items"]["inputParameter"].endswith("recipes")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["recipes"]["defaultValue"] == ["grpo", "sft", "sft_grpo"]
    compare = spec["components"]["comp-compare-study"]["inputDefinitions"]["artifacts"]["evaluations"]
    assert compare["isArtifactList"] is True
    tasks = all_tasks(spec)
    conditions = [t.get("triggerPolicy", {}).get("condition", "") for t in tasks.values()]
    assert any("'grpo'" in c for c in conditions) and any("'sft'" in c for c in conditions)


def test_exit_handler_closes_the_parent_run(compiled: Path) -> None:
    for name in PIPELINES:
        spec, _ = docs(compiled / f"{name}.yaml")
        close = spec["root"]["dag"]["tasks"]["close-run"]
        assert close["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
        assert close["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"]


def test_image_override(tmp_path: Path) -> None:
    paths = compile_all(tmp_path, options_for_images("registry.example.com/ml", "1.2.3"))
    spec, _ = docs(paths[0])
    used = {e["container"]["image"] for e in executors(spec).values()}
    assert used == {"registry.example.com/ml/thinkflow-base:1.2.3", "registry.example.com/ml/thinkflow-trainer:1.2.3"}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_local_build_strips_platform_config(name: str) -> None:
    from google.protobuf import json_format

    graph = build(name, local=True)
    platform = json_format.MessageToDict(graph.platform_spec)
    # Only the workspace stays (kfp.local maps it to a local folder): no secrets, selectors, volumes.
    assert list(platform["platforms"]["kubernetes"]) == ["pipelineConfig"]
    assert platform["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]["size"]
    executors_spec = json_format.MessageToDict(graph.pipeline_spec.deployment_spec)["executors"]
    for executor in executors_spec.values():
        assert not executor["container"].get("resources"), "kfp.local cannot resolve resource placeholders"
        assert not executor["container"].get("env")


def test_study_branches_share_a_rwo_workspace_one_at_a_time(tmp_path: Path) -> None:
    """With the chart's default storage (a ReadWriteOnce workspace), parallel 8-GPU pods on other nodes could not
    attach the volume (Multi-Attach): the committed package trains one recipe at a time. A ReadWriteMany class
    (`thinkflow compile --rwx-storage-class`) trains them in parallel."""
    spec, platform = docs(COMMITTED / "sft_vs_rl_study.yaml")
    workspace = platform["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]["kubernetes"]["pvcSpecPatch"]
    assert workspace["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in workspace
    (loop,) = [t for t in all_tasks(spec).values() if "parameterIterator" in t]
    assert loop["iteratorPolicy"] == {"parallelismLimit": 1}
    rwx = compile_all(tmp_path, options_for_images(rwx_storage_class="nfs-rwx"))
    spec, platform = docs(next(p for p in rwx if p.stem == "sft_vs_rl_study"))
    workspace = platform["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]["kubernetes"]["pvcSpecPatch"]
    assert workspace == {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs-rwx"}
    (loop,) = [t for t in all_tasks(spec).values() if "parameterIterator" in t]
    assert "iteratorPolicy" not in loop
    assert PipelineOptions(study_parallelism=2).study_fanout() == 2


def test_vlaa_thinker_build_fans_out_when_asked(compiled: Path) -> None:
    """build_shards is a string parameter (default "1"); ParallelFor over plan_shards with the compile-time
    parallelism limit, then merge_dataset over the collected shards (one shard + merge = the unsharded build)."""
    spec, _ = docs(compiled / "vlaa_thinker.yaml")
    param = spec["root"]["inputDefinitions"]["parameters"]["build_shards"]
    assert (param["defaultValue"], param["parameterType"]) == ("1", "STRING")
    tasks = all_tasks(spec)
    loop = next(t for t in tasks.values() if t.get("componentRef", {}).get("name") == "comp-for-loop-2")
    assert loop["iteratorPolicy"]["parallelismLimit"] == PipelineOptions().build_parallelism
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("plan-shards-Output")
    comps = {executor_component("exec-" + t["componentRef"]["name"].removeprefix("comp-")) for t in tasks.values()}
    assert {"plan_shards", "build_shard", "merge_dataset"} <= comps and "build_dataset" not in comps
    from thinkflow.data.build import shard_specs

    assert shard_specs(" 3 ") == ["0/3", "1/3", "2/3"]
    with pytest.raises(ValueError, match="build_shards must be a whole number >= 1"):
        shard_specs("0")


def test_vlaa_thinker_evaluates_one_task_per_benchmark_then_merges(compiled: Path) -> None:
    """ParallelFor over plan_eval's benchmark names: one GPU ``evaluate`` task per name (``part``), then
    ``merge_eval`` over the collected results feeds ``register`` (thinkflow.evaluate.merge: the one-task metrics)."""
    spec, _ = docs(compiled / "vlaa_thinker.yaml")
    tasks = all_tasks(spec)
    loop = next(t for t in tasks.values() if "plan-eval-Output" in str(t.get("parameterIterator", "")))
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    part = body["evaluate"]["inputs"]["parameters"]["part"]
    assert part["componentInputParameter"] == loop["parameterIterator"]["itemInput"]
    merge = spec["components"]["comp-merge-eval"]["inputDefinitions"]["artifacts"]["parts"]
    assert merge["isArtifactList"] is True
    register = tasks["register"]["inputs"]["artifacts"]["evaluation"]["taskOutputArtifact"]
    assert register == {"outputArtifactKey": "results", "producerTask": "merge-eval"}
    from thinkflow.components.plan_eval import plan_eval

    names = plan_eval.python_func(preset="paper-eval", overrides=None)
    assert names == ["mathvista", "mathvision", "mathverse", "dynamath", "wemath", "logicvista", "dataset"]
    assert plan_eval.python_func(preset="tiny-eval", overrides=None) == ["dataset"]


@pytest.mark.parametrize("name", list(PIPELINES))
def test_preflight_is_the_first_task(compiled: Path, name: str) -> None:
    """Issue 12: every task of the run (inside the exit handler that closes the parent run) waits for ``preflight``,
    which waits for nothing, takes the data preset and its overrides, and is never served from the cache."""
    spec, _ = docs(compiled / f"{name}.yaml")
    (handler,) = [t for t in spec["root"]["dag"]["tasks"].values() if t["componentRef"]["name"].startswith("comp-exit")]
    body = spec["components"][handler["componentRef"]["name"]]["dag"]["tasks"]
    first = body["preflight"]
    assert "dependentTasks" not in first and first["cachingOptions"].get("enableCache", False) is False
    inputs = first["inputs"]["parameters"]
    assert {k: v["componentInputParameter"] for k, v in inputs.items()} == {
        "data_preset": "pipelinechannel--data_preset",
        "data_overrides": "pipelinechannel--data_overrides",
        "model": "pipelinechannel--model",
    }

    def upstream(task: str) -> set[str]:
        direct = set(body[task].get("dependentTasks", []))
        return direct.union(*(upstream(t) for t in direct)) if direct else direct

    later = set(body) - {"preflight"}
    assert later and all("preflight" in upstream(t) for t in later), {t: upstream(t) for t in later}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_every_parameter_is_described_once_for_all_pipelines(compiled: Path, name: str) -> None:
    """Every input of a package has the description KFP's UI shows, from the one table of pipeline parameters
    (`thinkflow.pipelines.blocks.PARAMETERS`) unless the pipeline words it its own way."""
    from thinkflow.pipelines import blocks

    spec, _ = docs(compiled / f"{name}.yaml")
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    module = __import__(f"thinkflow.pipelines.{name}", fromlist=["PARAMETERS"])
    assert list(inputs) == sorted(module.PARAMETERS)
    for key, param in inputs.items():
        assert " ".join(param["description"].split()) == module.PARAMETERS[key].description
        assert key in blocks.PARAMETERS
    with pytest.raises(KeyError, match="no pipeline parameter"):
        blocks.parameters("model", "gpus")
