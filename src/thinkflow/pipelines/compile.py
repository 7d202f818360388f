"""Compile the pipelines to KFP packages (``pipelines/*.yaml``: IR YAML, ready for upload in the KFP UI)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler
from kfp.pipeline_spec import pipeline_spec_pb2

from thinkflow.pipelines.common import PipelineOptions
from thinkflow.pipelines.registry import PIPELINES, build

_HEADER_INPUT = re.compile(r"^(#\s+)(\w+)(: \w+ \[Default: )(.*)(\])$")


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _stable_header(text: str) -> str:
    """KFP's comment header prints dict defaults in protobuf map order, which varies between runs; print
    them with sorted keys so that compiling twice gives the same bytes (the drift test relies on it)."""
    spec = next(yaml.safe_load_all(text))
    inputs = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        match = _HEADER_INPUT.match(line)
        if match and match.group(2) in inputs and "defaultValue" in inputs[match.group(2)]:
            default = _sorted(inputs[match.group(2)]["defaultValue"])
            lines[i] = f"{match.group(1)}{match.group(2)}{match.group(3)}{default!r}{match.group(5)}"
    return "\n".join(lines)


def compile_pipeline(name: str, path: str | Path, options: PipelineOptions | None = None) -> Path:
    """Compile one pipeline (``vlaa_thinker``, ``sft_then_grpo``, ``sft_vs_rl_study``) to ``path``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build(name, options), str(out))
    out.write_text(_stable_header(out.read_text(encoding="utf-8")), encoding="utf-8")
    return out


def compile_all(out_dir: str | Path = "pipelines", options: PipelineOptions | None = None) -> list[Path]:
    """Compile every pipeline to ``out_dir/<name>.yaml``; returns the paths written."""
    return [compile_pipeline(name, Path(out_dir) / f"{name}.yaml", options) for name in PIPELINES]


def load_package(path: str | Path) -> tuple[pipeline_spec_pb2.PipelineSpec, pipeline_spec_pb2.PlatformSpec | None]:
    """Parse a compiled package back into its ``PipelineSpec`` (and ``PlatformSpec``, when present),
    failing on any field the protos do not define."""
    from google.protobuf import json_format

    docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d]
    if not docs:
        raise ValueError(f"{path}: empty pipeline package")
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    platform = None
    if len(docs) > 1:
        platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
    return spec, platform
