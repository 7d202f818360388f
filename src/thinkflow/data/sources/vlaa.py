"""Import the published VLAA-Thinking files (``VLAA-Thinking-SFT-126K.json``, ``VLAA-Thinking-GRPO-25K.json``).

Each file is a JSON list or JSON lines of ``{id, image, question, gt, ds_answer, caption, meta}`` (older
releases: ``train-sft.json`` / ``train-grpo.json``). Mapping to ThinkFlow records:

* ``gt`` (text or int) -> ``solution``; a Math PUMA multi-step solution ending in ``†Answer: …`` -> that final
  answer (the full text stays in ``meta.gt``);
* ``ds_answer`` (R1 output: ``<think>…</think>`` then free text) -> ``response`` normalised to
  ``<think>…</think><answer>…</answer>`` with the final answer found in the free text;
* ``caption``, ``meta`` and every other field are kept (``meta``);
* the SFT file -> split ``sft``, the GRPO file -> ``rl`` (from the file name, or ``split:`` in the config);
* ``verifier_type``, when absent, from the source prefix of ``image`` (first folder) or ``id`` (before the
  first ``-``) with `DEFAULT_VERIFIER_TABLE`, which ``verifier_table:`` in the config extends or overrides.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from thinkflow.data.sources.base import (
    Candidate,
    SourceBase,
    SourceError,
    as_text,
    bad_line,
    dotted,
    file_loader,
    local,
    read_json_records,
)
from thinkflow.data.text import math_puma_answer, normalize_response
from thinkflow.records import RecordError, VerifierType

# Source prefix -> verifier type (the paper's reward for each VLAA-Thinking source).
DEFAULT_VERIFIER_TABLE: dict[str, str] = {
    "clevr_math": "digit",
    "clevr": "digit",
    "geoqa170k": "mcq",
    "geoqa": "mcq",
    "arxivqa": "mcq",
    "synthesis": "math",
    "math_puma": "math",
    "mathpuma": "math",
    "coco": "iou",
    "vg": "iou",
    "docvqa": "open",
    "vizwiz": "open",
    "allava_laion": "open",
    "allava": "open",
    "chartqa": "open",
}
KNOWN_FIELDS = ("id", "image", "question", "gt", "ds_answer", "caption", "meta", "verifier_type", "solution")


def _norm(key: str) -> str:
    return re.sub(r"[\s\-]+", "_", key.strip().lower())


def source_prefixes(item_id: str, image: str) -> list[str]:
    """Candidate source names of a VLAA item: the image's first folder, then the id's prefix."""
    out = []
    first = image.lstrip("/").split("/", 1)[0] if "/" in image.lstrip("/") else ""
    if first:
        out.append(_norm(first))
    if "-" in item_id:
        out.append(_norm(item_id.split("-", 1)[0]))
    return out


def infer_verifier_type(item_id: str, image: str, table: dict[str, str]) -> tuple[str | None, str | None]:
    """``(verifier_type, source)`` from the table: exact prefix match first, then the longest table key that
    starts a prefix (``clevr_math_v2`` -> ``clevr_math``). ``(None, prefix)`` when nothing matches."""
    prefixes = source_prefixes(item_id, image)
    norm_table = {_norm(k): v for k, v in table.items()}
    for p in prefixes:
        if p in norm_table:
            return norm_table[p], p
    for p in prefixes:
        for key in sorted(norm_table, key=len, reverse=True):
            if p.startswith(key):
                return norm_table[key], p
    return None, (prefixes[0] if prefixes else None)


def split_from_filename(path: str) -> str | None:
    """``sft`` for the SFT file, ``rl`` for the GRPO file, from the name; ``None`` when it says neither."""
    name = Path(path).name.lower()
    has_sft, has_rl = "sft" in name, ("grpo" in name or re.search(r"(^|[^a-z])rl([^a-z]|$)", name) is not None)
    if has_sft == has_rl:
        return None
    return "sft" if has_sft else "rl"


class VlaaSource(SourceBase):
    """One published VLAA-Thinking file and its image folder."""

    kind: Literal["vlaa"] = "vlaa"
    json_file: str = Field(description="VLAA-Thinking JSON file (JSON list or JSON lines), local or s3://.")
    images: str = Field(description="Image root folder (the `image` fields are relative to it), local or s3://.")
    verifier_table: dict[str, VerifierType] = Field(
        default_factory=dict, description="Source prefix -> verifier type; extends/overrides the default table."
    )
    verifier_type: VerifierType | None = Field(default=None, description="Force one verifier type for every record.")

    @model_validator(mode="after")
    def _split_known(self) -> VlaaSource:
        if self.split is None and split_from_filename(self.json_file) is None:
            raise ValueError(
                f"cannot tell from the name whether {self.json_file} is the SFT or the GRPO file; "
                "set split: sft (SFT file) or split: rl (GRPO file)"
            )
        return self


def iter_vlaa(src: VlaaSource) -> Iterator[Candidate]:
    """Candidates from one VLAA-Thinking file."""
    path = local(src.json_file, "vlaa json")
    root = local(src.images, "vlaa images")
    assert path is not None
    if root is not None and not root.is_dir():
        raise SourceError(f"vlaa images: {src.images} is not a directory")
    split = src.split or split_from_filename(src.json_file)
    table = {**DEFAULT_VERIFIER_TABLE, **src.verifier_table}
    for pos, item in enumerate(read_json_records(path)):
        if isinstance(item, RecordError):
            yield bad_line(item, f"{path.stem}-{pos}")
            continue
        yield _candidate(item, pos, path, root, split, table, src)


def _candidate(
    item: dict[str, Any],
    pos: int,
    path: Path,
    root: Path | None,
    split: str | None,
    table: dict[str, str],
    src: VlaaSource,
) -> Candidate:
    rid = as_text(item.get("id")) or f"{path.stem}-{pos}"
    image = as_text(item.get("image")) or ""
    where = f"{path.name}[{pos}]"
    missing = [
        f for f in ("image", "question", "gt") if item.get(f) in (None, "") and not (f == "gt" and "solution" in item)
    ]
    if missing:
        return Candidate(rid, {}, None, image, error=f"{where}: missing field(s) {', '.join(repr(m) for m in missing)}")
    vtype, source = infer_verifier_type(rid, image, table)
    vtype = src.verifier_type or as_text(item.get("verifier_type")) or vtype
    if vtype is None:
        return Candidate(
            rid,
            {},
            None,
            image,
            error=f"{where}: no verifier_type and none inferable from id {rid!r} / image {image!r} "
            "(add the source prefix to verifier_table)",
        )
    gt_raw = item.get("gt", item.get("solution"))
    gt = as_text(gt_raw) or ""
    meta: dict[str, Any] = {}
    if isinstance(item.get("meta"), dict):
        meta.update(item["meta"])
    meta.update({k: v for k, v in item.items() if k not in KNOWN_FIELDS})
    solution = gt
    if "†Answer:" in gt:
        solution = math_puma_answer(gt)
        meta["gt"] = gt
    response = None
    ds_answer = item.get("ds_answer")
    if isinstance(ds_answer, str) and ds_answer.strip():
        response = normalize_response(ds_answer, solution, vtype)
        if response is None and split == "sft":
            return Candidate(rid, {}, None, image, error=f"{where}: ds_answer has no <think>…</think> reasoning")
    elif split == "sft":
        return Candidate(rid, {}, None, image, error=f"{where}: SFT record without ds_answer")
    caption = as_text(item.get("caption")) or None
    meta["original_image"] = image
    record = {
        "question": as_text(item["question"]),
        "solution": solution,
        "verifier_type": vtype,
        "response": response,
        "caption": caption,
        "source": src.name or source or "vlaa",
        "split": split,
        "meta": meta,
    }
    return Candidate(
        rid,
        record,
        file_loader(image, root),
        image,
        extras=as_text(dotted(item, src.extras)),
        text_question=as_text(dotted(item, src.text_question)),
    )
