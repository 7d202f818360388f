"""What every source yields: `Candidate` inputs for step 1 of the build, plus shared helpers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from thinkflow import storage
from thinkflow.errors import ThinkFlowError
from thinkflow.records import RecordError, iter_jsonl

SplitChoice = Literal["auto", "sft", "rl", "eval"]


class SourceError(ThinkFlowError, ValueError):
    """A source that cannot be read at all (missing file, bad format); the message names the file."""


class SourceBase(BaseModel):
    """Options every source kind has."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Source name (record `source`); default: from the kind/file.")
    split: SplitChoice | None = Field(
        default=None,
        description="Force a split for every record; `auto` = the step-6 rule; default: the record's own "
        "split when the source gives one, else `auto`.",
    )
    max_samples: int | None = Field(
        default=None, ge=1, description="Sampling cap: keep at most N records (random by seed)."
    )
    distill: bool | None = Field(
        default=None,
        description="Run steps 2-5 (teachers) on records without a response; default: when teachers are set.",
    )
    extras: str | None = Field(
        default=None,
        description="Dotted key of extra image information shown to the caption teacher (e.g. meta.rationale).",
    )
    text_question: str | None = Field(
        default=None,
        description="Dotted key of a text-only version of the question (Math PUMA): captioning is skipped and "
        "the reasoning teacher gets this text alone.",
    )


ImageLoader = Callable[[], bytes]


@dataclass
class Candidate:
    """One input before step 1: record fields, a way to get the image bytes, or an error."""

    id: str
    record: dict[str, Any]
    image: ImageLoader | None
    image_ref: str
    error: str | None = None
    extras: str | None = None
    text_question: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def dotted(item: Any, key: str | None) -> Any:
    """``item["a"]["b"]`` for ``"a.b"``; ``None`` when any part is missing."""
    if not key:
        return None
    node = item
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def as_text(value: Any) -> str | None:
    """A ground truth / field as text: numbers as written, lists/dicts (boxes) as JSON, ``None`` kept."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def file_loader(path: Path) -> ImageLoader:
    """A loader reading ``path``; a missing file raises `FileNotFoundError` naming it."""

    def load() -> bytes:
        return path.read_bytes()

    return load


def resolve_image(ref: str, root: Path | None) -> Path:
    """The local file for an image reference: absolute, or relative to ``root`` (a leading ``/`` is relative)."""
    p = Path(ref)
    if p.is_absolute() and p.exists():
        return p
    rel = ref.lstrip("/")
    if root is None:
        return Path(rel)
    return root / rel


def local(uri: str | None, what: str) -> Path | None:
    """A local path for a file/dir given as a path or ``s3://`` URI (downloaded once to the cache)."""
    if uri is None:
        return None
    try:
        return storage.localize(os.path.expanduser(uri) if not storage.is_remote(uri) else uri)
    except storage.StorageError as exc:
        raise SourceError(f"{what}: {exc}") from None


def read_json_records(path: Path) -> list[dict[str, Any]]:
    """Records from a JSON list file or a JSON-lines file; errors name the file (and line)."""
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096).lstrip()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    if not head:
        return []
    if head.startswith("["):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not all(isinstance(x, dict) for x in data):
            raise SourceError(f"{path}: expected a JSON list of objects")
        return data
    try:
        return [obj for _, obj in iter_jsonl(path)]
    except RecordError as exc:
        raise SourceError(str(exc)) from None
