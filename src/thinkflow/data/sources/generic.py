"""Field mapping shared by the generic sources (JSON lines / JSON files and HF `datasets`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pydantic import Field

from thinkflow.data.sources.base import Candidate, SourceBase, as_text, bytes_loader, dotted, file_loader
from thinkflow.data.sources.vlaa import DEFAULT_VERIFIER_TABLE
from thinkflow.data.text import normalize_response
from thinkflow.format import split_think
from thinkflow.records import VerifierType

# Record field -> source fields tried in order when the config maps nothing.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "image": ("image", "image_path", "img"),
    "question": ("question", "prompt", "query"),
    "solution": ("solution", "gt", "answer"),
    "verifier_type": ("verifier_type",),
    "response": ("response",),
    "caption": ("caption",),
    "split": ("split",),
    "meta": ("meta",),
}


class MappedSource(SourceBase):
    """Options of the sources whose field names are mapped in the config."""

    name: str = Field(description="Source name (record `source`, and the id prefix).")  # type: ignore[assignment]
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Record field -> source field (dotted for nested), e.g. {solution: answer, image: img_path}.",
    )
    verifier_type: VerifierType | None = Field(
        default=None, description="Verifier type of every record (else a field)."
    )


def _pick(item: dict[str, Any], field: str, fields: dict[str, str]) -> tuple[Any, str | None]:
    if field in fields:
        return dotted(item, fields[field]), fields[field]
    for col in DEFAULT_COLUMNS[field]:
        if col in item:
            return item[col], col
    return None, None


def image_loader(value: Any, root: Path | None) -> tuple[Any, str]:
    """``(loader, reference)`` for an image value: a path, ``{"bytes", "path"}`` (HF), raw bytes or a PIL image."""
    if isinstance(value, bytes | bytearray):
        return bytes_loader(bytes(value)), "<bytes>"
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes_loader(bytes(value["bytes"])), str(value.get("path") or "<bytes>")
        if value.get("path"):
            return file_loader(str(value["path"]), root), str(value["path"])
        return None, "<empty image>"
    if hasattr(value, "save") and hasattr(value, "mode"):  # a PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return bytes_loader(buf.getvalue()), "<PIL image>"
    if isinstance(value, str) and value:
        return file_loader(value, root), value
    return None, "<no image>"


def map_item(item: dict[str, Any], pos: int, src: MappedSource, root: Path | None, where: str) -> Candidate:
    """One source row -> a `Candidate` (or one carrying the error that names the row and field)."""
    fields = src.fields
    raw_id, _ = _pick(item, "id", fields)
    rid = f"{src.name}-{as_text(raw_id) if raw_id not in (None, '') else pos}"
    values: dict[str, Any] = {}
    used: set[str] = set()
    for name in DEFAULT_COLUMNS:
        value, col = _pick(item, name, fields)
        values[name] = value
        if col:
            used.add(col.split(".", 1)[0])
    img_value = values["image"]
    loader, ref = image_loader(img_value, root)
    missing = [f for f in ("question", "solution") if values[f] in (None, "")]
    if loader is None:
        missing.insert(0, "image")
    if missing:
        names = ", ".join(f"{m!r} (source field {fields.get(m, '/'.join(DEFAULT_COLUMNS[m]))!r})" for m in missing)
        return Candidate(rid, {}, None, ref, error=f"{where}: missing {names}")
    vtype = as_text(values["verifier_type"]) or src.verifier_type
    if vtype is None:  # a source named like a VLAA-Thinking source (docvqa, clevr_math, …) gets its type
        vtype = DEFAULT_VERIFIER_TABLE.get(src.name.strip().lower().replace("-", "_"))
    if not vtype:
        return Candidate(
            rid,
            {},
            None,
            ref,
            error=f"{where}: no verifier_type (map a field to it or set verifier_type in the source)",
        )
    solution = as_text(values["solution"]) or ""
    response = None
    if isinstance(values["response"], str) and values["response"].strip():
        response = normalize_response(values["response"], solution, vtype)
        if response is None:
            reasoning, _ = split_think(values["response"])
            why = "has no <think>…</think> reasoning" if not reasoning else "has no final answer"
            return Candidate(rid, {}, None, ref, error=f"{where}: field 'response' {why}")
    meta: dict[str, Any] = dict(values["meta"]) if isinstance(values["meta"], dict) else {}
    for key, value in item.items():
        if key in used or key in meta:
            continue
        if value is None or isinstance(value, str | int | float | bool | list | dict):
            meta[key] = value
    split = as_text(values["split"])
    record = {
        "question": as_text(values["question"]),
        "solution": solution,
        "verifier_type": vtype,
        "response": response,
        "caption": as_text(values["caption"]) or None,
        "source": src.name,
        "split": split if split in ("sft", "rl", "eval") else None,
        "meta": meta,
    }
    return Candidate(
        rid,
        record,
        loader,
        ref,
        extras=as_text(dotted(item, src.extras)),
        text_question=as_text(dotted(item, src.text_question)),
    )
