"""What every source yields: `Candidate` inputs for step 1 of the build, plus shared helpers."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from thinkflow import images, storage
from thinkflow.errors import ThinkFlowError
from thinkflow.images import ImageLimits
from thinkflow.records import RecordError, iter_jsonl_lines

logger = logging.getLogger(__name__)

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
        default=None,
        ge=1,
        description="Sampling cap: the first N candidates of a seeded shuffle (rejected ones are not replaced).",
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


ImageLoader = Callable[[ImageLimits], bytes]


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


def file_loader(ref: str, root: Path | None) -> ImageLoader:
    """A loader reading image ``ref`` inside ``root`` (default: the working directory) within the limits.

    The reference is checked when the loader runs (in step 1's worker threads): see `thinkflow.images.resolve`
    for what is refused (``..`` escapes, absolute paths and symlinks outside the root, URL-encoded tricks).
    """

    def load(limits: ImageLimits) -> bytes:
        path = images.resolve(ref, root if root is not None else Path.cwd())
        return images.read_file(path, limits=limits, what=repr(ref))

    return load


def bytes_loader(data: bytes) -> ImageLoader:
    """A loader for image bytes held in memory (their size is checked by `thinkflow.images.probe`)."""

    def load(limits: ImageLimits) -> bytes:
        return data

    return load


def local(uri: str | None, what: str) -> Path | None:
    """A local path for a file/dir given as a path or ``s3://`` URI (downloaded once to the cache)."""
    if uri is None:
        return None
    try:
        return storage.localize(os.path.expanduser(uri) if not storage.is_remote(uri) else uri)
    except storage.StorageError as exc:
        raise SourceError(f"{what}: {exc}") from None


def read_json_records(path: Path) -> Iterator[dict[str, Any] | RecordError]:
    """Records from a JSON list file or a JSON-lines file, streamed; errors name the file (and line/item).

    A JSON list (the published VLAA-Thinking files are one array of ~126K objects) is parsed incrementally
    with ``ijson``, so memory does not grow with the file. A bad JSON line (not JSON, not an object, longer
    than `records.MAX_LINE_BYTES`) comes back as its `RecordError`, in its place: the caller rejects that one
    record and keeps the others.
    """
    import ijson

    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096).lstrip()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    if not head:
        return
    if not head.startswith("["):
        try:
            for _, obj in iter_jsonl_lines(path):
                yield obj
        except RecordError as exc:
            raise SourceError(str(exc)) from None
        return
    done = 0
    with open(path, "rb") as fh:
        try:
            for pos, obj in enumerate(ijson.items(fh, "item", use_float=True)):
                if not isinstance(obj, dict):
                    raise SourceError(f"{path}: expected a JSON list of objects, item {pos} is {type(obj).__name__}")
                done = pos + 1
                yield obj
            return
        except ijson.JSONError as exc:
            if "integer overflow" not in str(exc):
                raise SourceError(f"{path}: not valid JSON after item {done - 1} ({exc})") from None
    # ijson's C parser (yajl) stops at integers past 64 bits and its pure-Python parser keeps a string that
    # spans reads in a growing buffer: such a file is read whole with the standard library instead.
    logger.warning("%s: integers past 64 bits after item %d: reading the file whole", path, done - 1)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    for pos, obj in enumerate(data[done:], done):
        if not isinstance(obj, dict):
            raise SourceError(f"{path}: expected a JSON list of objects, item {pos} is {type(obj).__name__}")
        yield obj


def bad_line(item: RecordError, rid: str) -> Candidate:
    """The rejected candidate standing for a JSON line that could not be read."""
    return Candidate(rid, {}, None, "", error=str(item))
