"""Stage configs: pydantic models, YAML presets shipped in the package, and `--set key=value` overrides.

Every stage takes ONE config object (a subclass of `StageConfig`). A config is built from, in order:
the class defaults, a preset (a name such as ``tiny-grpo`` shipped in ``thinkflow/presets/`` or a path
to a YAML file), then ``--set a.b=value`` overrides (values parsed as YAML, then type-checked by pydantic).
Unknown keys are errors that name the key.
"""

from __future__ import annotations

import logging
import math
import os
import re
import types
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import to_jsonable_python

from thinkflow import env
from thinkflow.errors import UsageError, did_you_mean

C = TypeVar("C", bound="StageConfig")

PRESET_DIR = "presets"
# Old preset names that still load, with a warning naming the new one.
DEPRECATED_PRESETS = {"vlaa-distill": "vlaa-distill-open"}
# The shipped presets name their S3 locations in the bucket `thinkflow`; where $THINKFLOW_BUCKET is set (the chart
# publishes its `s3.bucket` in the thinkflow-env ConfigMap) they read and write that bucket instead.
PRESET_BUCKET = "thinkflow"
BUCKET_ENV = env.BUCKET
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3 bucket naming rules (the safe subset)


def preset_bucket(text: str) -> str:
    """A shipped preset's text with ``s3://thinkflow/`` pointed at ``$THINKFLOW_BUCKET`` when that is set."""
    bucket = os.environ.get(BUCKET_ENV, "").strip()
    if not bucket or bucket == PRESET_BUCKET:
        return text
    if not _BUCKET_NAME.fullmatch(bucket):
        raise ConfigError(f"{BUCKET_ENV}={bucket!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
    return text.replace(f"s3://{PRESET_BUCKET}/", f"s3://{bucket}/")


class ConfigError(UsageError, ValueError):
    """A config that cannot be loaded or validated; the message names the key or file."""


class StageConfig(BaseModel):
    """Base class for every stage config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Old key -> its one current spelling. The old key still loads (presets, --set, pipeline overrides) with a
    # DeprecationWarning naming the new one; giving both is an error. Subclasses list their renames here.
    renamed_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _accept_renamed_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls.renamed_keys or not set(data) & set(cls.renamed_keys):
            return data
        data = dict(data)
        for old, new in cls.renamed_keys.items():
            if old not in data:
                continue
            if new in data:
                raise ConfigError(f"{cls.__name__}: both {old!r} (deprecated) and {new!r} are set; keep only {new!r}")
            warnings.warn(f"{cls.__name__}: key {old!r} is deprecated, use {new!r}", DeprecationWarning, stacklevel=2)
            data[new] = data.pop(old)
        return data

    def to_yaml(self) -> str:
        """The resolved config as YAML (what `--print-config` prints and what runs log)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


class StageResult(BaseModel):
    """What a stage function returns: where its outputs are and its headline metrics."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    output: str
    metrics: dict[str, float] = {}
    artifacts: dict[str, str] = {}
    mlflow_run_id: str | None = None


def preset_names() -> list[str]:
    """Names of the presets shipped in the package."""
    root = resources.files("thinkflow").joinpath(PRESET_DIR)
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def read_preset(config: str) -> dict[str, Any]:
    """Read a preset by name (shipped) or by path (YAML file) into a dict."""
    path = Path(config)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {config}")
        text = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        if config in DEPRECATED_PRESETS:
            new = DEPRECATED_PRESETS[config]
            warnings.warn(
                f"preset {config!r} is deprecated: use {new!r} (or vlaa-distill-paper for the paper's teachers)",
                DeprecationWarning,
                stacklevel=2,
            )
            logging.getLogger("thinkflow").warning("preset %r is deprecated; loading %r", config, new)
            config = new
        res = resources.files("thinkflow").joinpath(PRESET_DIR, f"{config}.yaml")
        if not res.is_file():
            names = preset_names()
            raise ConfigError(
                f"unknown preset {config!r}{did_you_mean(config, names)}; shipped presets: {', '.join(names)}"
            )
        text = preset_bucket(res.read_text(encoding="utf-8"))
        where = f"preset {config}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override in place.

    The value is parsed as YAML (``true``, ``3``, ``[1, 2]``); pydantic then checks and coerces it against the
    field's type (so ``lr=1e-6`` becomes a float for a float field and stays text for a text field).
    """
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = value


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The (nested) config model that holds the key at ``loc`` (``reward.scorer_model`` -> RewardConfig)."""
    model = cls
    for part in loc:
        field = model.model_fields.get(str(part))
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            break
        model = inner
    return model


def _format_errors(cls: type[StageConfig], exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            owner = _model_at(cls, tuple(err["loc"][:-1]))
            hint = did_you_mean(str(err["loc"][-1]), owner.model_fields)
            lines.append(f"unknown key {key!r}{hint} for {owner.__name__} (known: {', '.join(owner.model_fields)})")
        else:
            lines.append(f"key {key!r}: {err['msg']} (got {err.get('input')!r})")
    return f"{where}: " + "; ".join(lines)


def load_config(cls: type[C], config: str | None = None, sets: list[str] | None = None) -> C:
    """Build a `cls` from a preset/YAML file and ``key=value`` overrides, validated by pydantic."""
    data = read_preset(config) if config else {}
    for assignment in sets or []:
        apply_override(data, assignment)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(cls, exc, config or "config")) from None


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``base`` (nested dicts merged key by key, everything else replaced)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
    return base


def integral(value: Any) -> Any:
    """KFP passes dict parameters as protobuf Structs, where every number is a float: 10 -> 10.0.

    Floats with no fractional part become ints again so that int fields (``max_steps``) and text fields
    alike get what the user wrote.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def stage_config(cls: type[C], preset: str | None, overrides: Mapping[str, Any] | None = None, **fixed: Any) -> C:
    """A stage config in layers: ``preset`` (shipped name or YAML path; empty: class defaults), then the
    ``overrides`` dict (a pipeline parameter; nested keys merged, KFP's float numbers made whole again), then
    the keys the caller fixes (``None`` values are skipped, so the preset's value stays). Errors name the key,
    as on the command line."""
    data = read_preset(preset) if preset else {}
    deep_merge(data, integral(dict(overrides or {})))
    for key, value in fixed.items():
        if value is not None:
            data[key] = value
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        where = f"{cls.__name__} (preset {preset!r} + overrides)" if preset else f"{cls.__name__} (overrides)"
        raise ConfigError(_format_errors(cls, exc, where)) from None


class ConfigKey(NamedTuple):
    """One key of a config as `explain` lists it."""

    key: str  # dotted: ``reward.scorer_model``; items of a list or dict of sections: ``sources.<i>.kind``
    type: str  # the annotation as written (``str | None``, ``Literal['hf', 'vllm']``)
    value: Any  # JSON-able: the current value (an instance was given) or the default (a class was given)
    description: str  # the field's ``Field(description=...)``; empty when it has none
    section: bool = False  # a nested config section: its keys follow as rows of their own
    required: bool = False  # no default: the key must be given


def explain(config: BaseModel | type[BaseModel]) -> list[ConfigKey]:
    """Every key of a config, nested sections included, with its type, value and description.

    Given an instance, values are its current ones (what ``--print-config --explain`` prints); given a class,
    its defaults (the generated docs table), and optional sections that default to ``None`` are listed too.
    The keys of a list or dict of sections are listed once, under ``<key>.<i>`` / ``<key>.<name>``, with the
    item section's defaults.
    """
    if isinstance(config, BaseModel):
        return _explain(type(config), config.model_dump(mode="json"), "", schema=False)
    return _explain(config, None, "", schema=True)


REQUIRED = "(required)"


def _explain(cls: type[BaseModel], values: dict[str, Any] | None, prefix: str, *, schema: bool) -> list[ConfigKey]:
    """Rows of ``cls``: values from ``values``, or the class defaults when it is ``None``."""
    rows: list[ConfigKey] = []
    for name, field in cls.model_fields.items():
        key, ann = f"{prefix}{name}", field.annotation
        required = values is None and field.is_required()
        if values is not None:
            value = values.get(name)
        else:
            value = REQUIRED if required else to_jsonable_python(field.get_default(call_default_factory=True))
        section, item, placeholder = _section_of(ann)
        expand = section is not None and (isinstance(value, dict) or (schema and value is None))
        rows.append(ConfigKey(key, _type_name(ann), value, field.description or "", expand, required))
        if expand and section is not None:
            rows.extend(_explain(section, value if isinstance(value, dict) else None, f"{key}.", schema=schema))
        elif item is not None:
            rows.extend(_explain(item, None, f"{key}.{placeholder}.", schema=schema))
    return rows


def _section_of(ann: Any) -> tuple[type[BaseModel] | None, type[BaseModel] | None, str]:
    """(section class of ``X`` / ``X | None``, item section of ``list[X]`` / ``dict[str, X]``, item placeholder)."""

    def model(t: Any) -> type[BaseModel] | None:
        return t if isinstance(t, type) and issubclass(t, BaseModel) else None

    if model(ann) is not None:
        return model(ann), None, ""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _section_of(args[0])
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _section_of(inner[0]) if len(inner) == 1 else (None, None, "")
    if origin is list and len(args) == 1 and model(args[0]) is not None:
        return None, model(args[0]), "<i>"
    if origin is dict and len(args) == 2 and model(args[1]) is not None:
        return None, model(args[1]), "<name>"
    return None, None, ""


def _type_name(ann: Any) -> str:
    """An annotation as a reader writes it: ``str | None``, ``list[Source]``, ``Literal['a', 'b']``."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if ann is type(None):
        return "None"
    if ann is Ellipsis:
        return "..."
    if origin is not None:
        name = getattr(origin, "__name__", None) or repr(origin).rsplit(".", 1)[-1]
        return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name
    return ann.__name__ if isinstance(ann, type) else repr(ann).rsplit(".", 1)[-1]
