"""Every pod-spec placeholder of every compiled package resolves the way KFP 2.17's driver resolves it.

The KFP backend cannot run here, so this test encodes the rules read in its source (kubeflow/pipelines, tag
2.17.0, commit 4a3592cb2dd0a91a4652ab93893ec8beda1f3158) and applies them to what we ship:

- backend/src/v2/driver/resolve.go:818-831 `resolvePodSpecInputRuntimeParameter`: a placeholder
  ``{{$.inputs.parameters['X']}}`` becomes ``executorInput.Inputs.ParameterValues[X].GetStringValue()``
  (line 825), which is "" for a number, a bool, a list or a struct;
- backend/src/v2/driver/driver.go:170-196 `getPodResource` (cpu/memory requests and limits, line 181) and
  driver.go:415-446 (accelerator ``resourceType`` line 419, ``resourceCount`` line 432), driver.go:449 (the
  image) all go through it; an empty accelerator count silently drops the GPU limit (line 440:
  ``if acceleratorType != "" && acceleratorCount != ""``), an empty cpu/memory fails ParseQuantity;
- backend/src/v2/driver/k8s.go:199-201 resolves ``nodeSelectorJson`` with `resolveK8sJsonParameter`, which
  reads ``GetStructValue()`` (resolve.go:855): the parameter must be a STRUCT;
- backend/src/v2/driver/k8s.go:232-247: ``tolerationJson`` is a STRUCT (one toleration) or a LIST;
- resolve.go:389-396: a ``componentInputParameter`` that the enclosing DAG was not given fails the task
  ("parent DAG does not have input parameter"), so every link of the chain must exist.

The executor's parameter values are the task's inputs, taken from the enclosing DAG's inputs up to the
root's (the run's parameters, or their defaults): the test follows that chain through sub-DAGs (exit
handler, ParallelFor, conditions) and checks the type at every level.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format, struct_pb2

REPO = Path(__file__).resolve().parents[2]
PACKAGES = sorted((REPO / "pipelines").glob("*.yaml"))
PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}$")
# Kubernetes resource.Quantity (apimachinery/pkg/api/resource/quantity.go) in the forms we use.
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def get_string_value(value: Any) -> str:
    """Go's ``structpb.Value.GetStringValue()`` for a parameter value as KFP stores it (JSON -> Value)."""
    v = json_format.ParseDict(value, struct_pb2.Value())
    return v.string_value if v.WhichOneof("kind") == "string_value" else ""


class Package:
    def __init__(self, path: Path) -> None:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        self.spec, self.platform = docs[0], (docs[1] if len(docs) > 1 else {})
        self.components: dict[str, Any] = dict(self.spec["components"])
        self.components["root"] = self.spec["root"]
        # DAG component -> [(enclosing DAG component, task that runs it)]
        self.callers: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for dag_name, comp in self.components.items():
            for task in comp.get("dag", {}).get("tasks", {}).values():
                self.callers.setdefault(task["componentRef"]["name"], []).append((dag_name, task))

    def origins(self, dag: str, param: str, trail: str) -> list[tuple[str, str, Any]]:
        """Where input ``param`` of DAG ``dag`` comes from: (trail, parameterType, value the run gets by
        default) for every path up to the root; asserts the type at every level on the way."""
        definition = self.components[dag].get("inputDefinitions", {}).get("parameters", {}).get(param)
        assert definition is not None, f"{trail}: {dag} has no input {param!r}"
        kind = definition["parameterType"]
        if dag == "root":
            return [(f"{trail} <- root input {param!r}", kind, definition.get("defaultValue"))]
        out = []
        for parent, task in self.callers[dag]:
            for where, k, v in self.source(parent, task, param, trail):
                out.append((where, kind if k == kind else f"{kind}<-{k}", v))
        return out

    def source(self, dag: str, task: dict[str, Any], param: str, trail: str) -> list[tuple[str, str, Any]]:
        """The origins of input ``param`` of ``task`` (which runs inside DAG ``dag``)."""
        spec = task.get("inputs", {}).get("parameters", {}).get(param)
        here = f"{trail} <- task {task['taskInfo']['name']!r}"
        assert spec is not None, f"{here} passes no {param!r}"
        if "componentInputParameter" in spec:
            return self.origins(dag, spec["componentInputParameter"], here)
        if "runtimeValue" in spec:
            value = spec["runtimeValue"]["constant"]
            return [(f"{here} constant", "STRING" if isinstance(value, str) else type(value).__name__, value)]
        raise AssertionError(f"{here}: {param!r} comes from {spec} (a task output cannot feed a pod-spec field)")

    def executor_tasks(self) -> list[tuple[str, dict[str, Any], str]]:
        """(enclosing DAG, task, executor label) for every task that runs a container."""
        out = []
        for dag_name, comp in self.components.items():
            for task in comp.get("dag", {}).get("tasks", {}).values():
                label = self.components[task["componentRef"]["name"]].get("executorLabel")
                if label:
                    out.append((dag_name, task, label))
        return out


def pod_spec_placeholders(container: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) for the container fields the driver resolves with resolvePodSpecInputRuntimeParameter."""
    res = container.get("resources", {})
    fields = [("image", container.get("image", ""))]
    for key in ("resourceCpuLimit", "resourceCpuRequest", "resourceMemoryLimit", "resourceMemoryRequest"):
        fields.append((key, res.get(key, "")))
    acc = res.get("accelerator", {})
    fields.append(("accelerator.resourceType", acc.get("resourceType", "")))
    fields.append(("accelerator.resourceCount", acc.get("resourceCount", "")))
    return [(f, v) for f, v in fields if v]


def check_package(pkg: Package) -> list[str]:
    """Every problem the 2.17 driver would hit with the run's default parameters (empty list: none)."""
    problems = []
    executors = pkg.spec["deploymentSpec"]["executors"]
    for dag, task, label in pkg.executor_tasks():
        for field, value in pod_spec_placeholders(executors[label]["container"]):
            match = PLACEHOLDER.match(value)
            if not match:
                continue
            where = f"{label}.{field}"
            for trail, kind, default in pkg.source(dag, task, match.group(1), where):
                if kind != "STRING":
                    problems.append(f"{trail}: parameterType {kind}, GetStringValue() would give ''")
                    continue
                resolved = get_string_value(default)
                if field == "image" or field == "accelerator.resourceType":
                    ok = bool(resolved)
                else:
                    ok = bool(QUANTITY.match(resolved))
                if not ok:
                    problems.append(f"{trail}: default {default!r} does not resolve to a {field} quantity")
    k8s = pkg.platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    for dag, _task, label in pkg.executor_tasks():
        cfg = k8s.get(label, {})
        json_params = []
        if "nodeSelectorJson" in cfg.get("nodeSelector", {}):
            json_params.append(("nodeSelectorJson", cfg["nodeSelector"]["nodeSelectorJson"], {"STRUCT"}))
        for tol in cfg.get("tolerations", []):
            if "tolerationJson" in tol:
                json_params.append(("tolerationJson", tol["tolerationJson"], {"STRUCT", "LIST"}))
        for field, ref, kinds in json_params:
            # the platform spec names an input of the enclosing DAG (k8s.go resolves it against the parent DAG's
            # parameters: resolveInputParameter, resolve.go:389-396)
            for trail, kind, _ in pkg.origins(dag, ref["componentInputParameter"], f"{label}.{field}"):
                if kind not in kinds:
                    problems.append(f"{trail}: parameterType {kind}, the driver reads {' or '.join(sorted(kinds))}")
    return problems


def test_there_are_packages_to_check() -> None:
    assert {p.stem for p in PACKAGES} >= {"vlaa_thinker", "sft_then_grpo", "sft_vs_rl_study"}


@pytest.mark.parametrize("path", PACKAGES, ids=lambda p: p.stem)
def test_every_pod_spec_placeholder_resolves_from_a_string_input(path: Path) -> None:
    pkg = Package(path)
    assert check_package(pkg) == []
    # and the GPU tasks do have placeholders to resolve (the check is not vacuous)
    executors = pkg.spec["deploymentSpec"]["executors"]
    counts = [
        e["container"]["resources"]["accelerator"]["resourceCount"]
        for e in executors.values()
        if "accelerator" in e["container"].get("resources", {})
    ]
    assert counts and all(PLACEHOLDER.match(c) for c in counts), counts


def test_the_check_catches_a_number_parameter_and_a_missing_dag_input(tmp_path: Path) -> None:
    """The failure modes this test guards against: an ``int`` GPU count compiles to NUMBER_INTEGER, which the
    driver reads as '' (the pod gets no GPU); and a resource placeholder inside an ExitHandler whose channel
    the compiler did not pass into the sub-DAG (the driver fails: "parent DAG does not have input")."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11")
    def work():
        print("work")

    @dsl.pipeline(name="numbers")
    def numbers(gpus: int = 8, accelerator: str = "nvidia.com/gpu"):
        work().set_accelerator_type(accelerator).set_accelerator_limit(gpus)

    @dsl.pipeline(name="nested")
    def nested(gpus: str = "8", accelerator: str = "nvidia.com/gpu"):
        with dsl.ExitHandler(work()):
            work().set_accelerator_type(accelerator).set_accelerator_limit(gpus)

    compiler.Compiler().compile(numbers, str(tmp_path / "numbers.yaml"))
    problems = check_package(Package(tmp_path / "numbers.yaml"))
    assert problems and any("resourceCount" in p and "NUMBER_INTEGER" in p for p in problems), problems
    assert get_string_value(8) == "" and get_string_value("8") == "8"
    compiler.Compiler().compile(nested, str(tmp_path / "nested.yaml"))
    with pytest.raises(AssertionError, match="comp-exit-handler-1 has no input 'pipelinechannel--"):
        check_package(Package(tmp_path / "nested.yaml"))
