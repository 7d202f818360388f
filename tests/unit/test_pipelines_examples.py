"""The examples the KFP UI shows in the parameter descriptions of the compiled packages are accepted.

For every ``*_overrides`` parameter of every package in ``pipelines/``, the ``e.g. {...}`` in its description is
merged into the preset the package passes next to it (its default) and validated by the stage config the
consuming component builds (`thinkflow.config.stage_config`, exactly what runs in the pod); the node selector example
must be what kfp-kubernetes' ``nodeSelectorJson`` unmarshals into (a map of strings to strings).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from thinkflow.config import stage_config

REPO = Path(__file__).resolve().parents[2]
PACKAGES = sorted((REPO / "pipelines").glob("*.yaml"))
EXAMPLE = re.compile(r"e\.g\. (\{.*\})\.?\s*$", re.S)


def _config(component: str) -> tuple[type[Any], dict[str, Any]]:
    """The stage config a component builds and the keys it fixes (artifact paths, as in the component)."""
    from thinkflow.data.build import BuildConfig
    from thinkflow.data.validate import ValidateConfig
    from thinkflow.evaluate import EvalConfig
    from thinkflow.registry import RegisterConfig
    from thinkflow.train.grpo import GRPOStageConfig
    from thinkflow.train.sft import SFTConfig

    train = {"data": "/d", "output_dir": "/m", "checkpoint_dir": "/c"}
    return {
        "build_dataset": (BuildConfig, {"output_dir": "/d", "work_dir": "/w"}),
        "build_shard": (BuildConfig, {"output_dir": "/d", "work_dir": "/w", "shard": "0/1"}),
        "validate_data": (ValidateConfig, {"data": "/d"}),
        "sft": (SFTConfig, train),
        "grpo": (GRPOStageConfig, train),
        "evaluate": (EvalConfig, {"model": "/m", "output_dir": "/r"}),
        "plan_eval": (EvalConfig, {"model": "<model>", "output_dir": "<out>"}),  # the evaluate tasks' config
        "register": (RegisterConfig, {"model": "/m", "eval": "/r"}),
    }[component]


def _examples(path: Path) -> list[tuple[str, Any]]:
    spec = next(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    out = []
    for name, param in spec["root"]["inputDefinitions"]["parameters"].items():
        match = EXAMPLE.search(" ".join(param.get("description", "").split()))
        if match:
            out.append((name, json.loads(match.group(1))))
    return out


def _consumers(spec: dict[str, Any], param: str) -> list[tuple[str, str | None]]:
    """(component, preset parameter or constant) of every task whose ``overrides`` come from ``param``."""
    names = {param, f"pipelinechannel--{param}"}
    out = []
    for comp in [spec["root"], *spec["components"].values()]:
        for task in comp.get("dag", {}).get("tasks", {}).values():
            inputs = task.get("inputs", {}).get("parameters", {})
            if inputs.get("overrides", {}).get("componentInputParameter") not in names:
                continue
            component = re.sub(r"-\d+$", "", task["componentRef"]["name"].removeprefix("comp-")).replace("-", "_")
            preset = inputs.get("preset", {})
            if "componentInputParameter" in preset:
                root_name = preset["componentInputParameter"].removeprefix("pipelinechannel--")
                out.append((component, spec["root"]["inputDefinitions"]["parameters"][root_name]["defaultValue"]))
            else:
                out.append((component, preset.get("runtimeValue", {}).get("constant")))
    return out


@pytest.mark.parametrize("path", PACKAGES, ids=lambda p: p.stem)
def test_description_examples_validate_against_their_config(path: Path) -> None:
    spec = next(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    examples = _examples(path)
    checked = 0
    for name, example in examples:
        if name == "gpu_node_selector":
            assert isinstance(example, dict) and all(isinstance(v, str) for v in example.values()), example
            checked += 1
            continue
        assert name.endswith("_overrides"), f"{path.name}: no rule to check the example of {name}"
        consumers = _consumers(spec, name)
        assert consumers, f"{path.name}: no task takes {name}"
        for component, preset in consumers:
            cls, fixed = _config(component)
            cfg = stage_config(cls, preset or None, example, **fixed)
            for key, value in example.items():
                if not isinstance(value, dict):
                    assert getattr(cfg, key) == value, f"{name}: {key} not applied"
            checked += 1
    if path.stem == "vlaa_thinker":
        assert checked >= 6  # data, validate, grpo, eval, register, node selector


def test_a_wrong_example_is_caught() -> None:
    """The examples issue 12 reported: both are rejected, naming the key."""
    from thinkflow.config import ConfigError

    for component, preset, example, key in (
        ("build_dataset", "vlaa-distill", {"n": 2000}, "n"),
        ("register", None, {"margin": 0.01}, "margin"),
    ):
        cls, fixed = _config(component)
        with pytest.raises(ConfigError, match=key):
            stage_config(cls, preset, example, **fixed)
