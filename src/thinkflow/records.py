"""The record schema every stage reads and writes (one JSON line per record, see DESIGN.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from thinkflow.errors import ThinkFlowError

VerifierType = Literal["digit", "mcq", "math", "iou", "open"]
Split = Literal["sft", "rl", "eval"]
VERIFIER_TYPES: tuple[str, ...] = ("digit", "mcq", "math", "iou", "open")
SPLITS: tuple[str, ...] = ("sft", "rl", "eval")

# The paper's "aha" cues (Fig. 7): samples whose reasoning has one go to the RL split (build step 6), and
# evaluation counts them in responses.
AHA_CUES: tuple[str, ...] = (
    "wait",
    "again",
    "double-check",
    "hmm",
    "mistake",
    "alternatively",
    "check",
    "i should confirm",
)

# The paper's Figure 12 system prompt (VLAA-Thinker), verbatim.
SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer here "
    "</answer>"
)


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


class RecordError(ThinkFlowError, ValueError):
    """A record that does not fit the schema; the message names the file, line and field."""


def parse_record(data: dict[str, Any], *, where: str = "") -> Record:
    """Validate one record, raising `RecordError` naming `where`, the record id and the bad fields."""
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        rid = data.get("id", "?") if isinstance(data, dict) else "?"
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}" for err in exc.errors()
        )
        raise RecordError(f"{where} record id={rid!r}: {problems}".strip()) from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line; a bad line raises naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if lineno == 1 and line.lstrip().startswith("["):
                raise RecordError(
                    f"{path}: expected JSON lines (one JSON object per line), got a JSON array; "
                    f"convert it with: jq -c '.[]' {path}"
                )
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise RecordError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
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
