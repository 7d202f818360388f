"""The record schema every stage reads and writes (one JSON line per record, see DESIGN.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from thinkflow.errors import ThinkFlowError

# The system prompt and the aha cues live in `thinkflow.format` (the one home of the answer format);
# re-exported here for callers that import them with the schema.
from thinkflow.format import AHA_CUES as AHA_CUES
from thinkflow.format import SYSTEM_PROMPT as SYSTEM_PROMPT

VerifierType = Literal["digit", "mcq", "math", "iou", "open"]
Split = Literal["sft", "rl", "eval"]
VERIFIER_TYPES: tuple[str, ...] = ("digit", "mcq", "math", "iou", "open")
SPLITS: tuple[str, ...] = ("sft", "rl", "eval")


class Record(BaseModel):
    """One sample. `image` is a path relative to the dataset directory, or a URI."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    image: str = Field(min_length=1)
    question: str = Field(min_length=1)
    solution: str
    verifier_type: VerifierType
    response: str | None = None
    caption: str | None = None
    source: str = ""
    split: Split | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        bad = sorted({c for c in value if ord(c) < 32 or ord(c) == 127})
        if bad:
            raise ValueError(f"must not contain control characters (found {', '.join(repr(c) for c in bad)})")
        return value


class RecordError(ThinkFlowError, ValueError):
    """A record that does not fit the schema; the message names the file, line and field."""


def parse_record(data: dict[str, Any], *, where: str = "") -> Record:
    """Validate one record, raising `RecordError` naming `where`, the record id and the bad fields."""
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        rid = data.get("id", "?") if isinstance(data, dict) else "?"
        problems = "; ".join(f"field '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}" for err in exc.errors())
        raise RecordError(f"{where} record id={rid!r}: {problems}".strip()) from None


# Longest JSON line read (a record with its response is a few KB; one with an inline base64 image a few MB).
MAX_LINE_BYTES = 16 * 1024 * 1024


def iter_jsonl_lines(
    path: str | Path, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, dict[str, Any] | RecordError]]:
    """``(line number, object or the RecordError of that line)`` for each non-blank line, in bounded memory.

    A line longer than ``max_line_bytes`` is skipped in chunks (never held whole) and reported as an error.
    """
    with open(path, "rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(max_line_bytes + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                size = len(raw)
                while True:  # skip the rest of the line without keeping it
                    chunk = fh.readline(1 << 20)
                    size += len(chunk)
                    if not chunk or chunk.endswith(b"\n"):
                        break
                yield lineno, RecordError(
                    f"{path}:{lineno}: line of {size:,} bytes is longer than the limit of {max_line_bytes:,} bytes"
                )
                continue
            if not raw.strip():
                continue
            if lineno == 1 and raw.lstrip().startswith(b"["):
                raise RecordError(
                    f"{path}: expected JSON lines (one JSON object per line), got a JSON array; "
                    f"convert it with: jq -c '.[]' {path}"
                )
            try:
                obj = json.loads(raw)
            except UnicodeDecodeError:
                yield lineno, RecordError(f"{path}:{lineno}: not UTF-8 text")
                continue
            except json.JSONDecodeError as exc:
                yield lineno, RecordError(f"{path}:{lineno}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                yield lineno, RecordError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                continue
            yield lineno, obj


def iter_jsonl(path: str | Path, *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line; a bad or over-long line raises naming the file and
    line."""
    for lineno, obj in iter_jsonl_lines(path, max_line_bytes=max_line_bytes):
        if isinstance(obj, RecordError):
            raise obj
        yield lineno, obj


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSON-lines file; a bad line raises naming the file and line number."""
    for _, obj in iter_jsonl(path):
        yield obj


def read_records(path: str | Path) -> Iterator[Record]:
    """Yield validated records from a JSON-lines file (errors name the file, line, id and field)."""
    for lineno, obj in iter_jsonl(path):
        yield parse_record(obj, where=f"{path}:{lineno}:")


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write rows (records or dicts) as JSON lines atomically; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            obj = row.model_dump(exclude_none=True) if isinstance(row, BaseModel) else row
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n
