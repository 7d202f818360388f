"""``thinkflow data validate DIR``: check a built dataset and fail when too much of it is bad.

Checks every record of ``sft.jsonl`` / ``rl.jsonl`` / ``eval.jsonl``: JSON and schema (naming the field),
``split`` matching the file, unique ids across splits, a known verifier type (the rewards registry),
``iou`` solutions that are ``[x1, y1, x2, y2]`` boxes (four numbers, not mixing relative and pixel
coordinates), responses in ``<think>…</think><answer>…</answer>``
form (required in ``sft``), and images that exist and decode. When ``manifest.json`` is present, the split
files must match the record counts and SHA-256 it lists. Fails (`DataValidationError`, non-zero exit in the
CLI, naming the records) when the share of bad records exceeds ``max_bad_fraction`` or the manifest does
not match.

After a deliberate hand edit of a local dataset, ``rehash`` (``thinkflow data validate DIR --rehash``) refreshes
the manifest instead of failing on it (`thinkflow.data.manifest.rehash`: counts, hashes and a new content hash,
the changes kept in the manifest under ``rehashed``) once the records themselves pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from thinkflow import images, storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.data.build_config import BuildError
from thinkflow.data.checks import known_verifier_types, solution_problem
from thinkflow.data.loader import dataset_root
from thinkflow.data.manifest import rehash
from thinkflow.errors import ThinkFlowError
from thinkflow.format import is_well_formed
from thinkflow.records import SPLITS, RecordError, parse_record

REHASH_HINT = " (a deliberate edit: refresh the manifest with --rehash)"


class DataValidationError(ThinkFlowError, ValueError):
    """A dataset that fails validation; the message names the bad records and why."""


class ValidateConfig(StageConfig):
    """Config of `run`: the dataset and how strict to be."""

    data: str = Field(description="Dataset directory or s3:// URI.")
    max_bad_fraction: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of bad records tolerated.")
    check_images: bool = Field(default=True, description="Open and decode every image.")
    max_listed: int = Field(default=20, ge=1, description="Bad records named in the error message.")
    rehash: bool = Field(
        default=False,
        description="Refresh manifest.json (counts, SHA-256, content hash) after a deliberate hand edit of a local "
        "dataset, once its records pass; the dataset gets a new identity in lineage and the gate.",
    )


@dataclass
class Problem:
    where: str
    id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where} id={self.id!r}: {self.reason}"


@dataclass
class Report:
    records: int = 0
    bad_ids: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    dataset_problems: list[str] = field(default_factory=list)
    manifest_problems: list[str] = field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        return len(self.bad_ids) / self.records if self.records else 0.0


def _image_problem(root: Path, ref: str) -> str | None:
    try:
        if storage.is_remote(ref):
            data = images.read_file(storage.localize(ref), what=ref)
        else:
            data = images.read_file(images.resolve(ref, root), what=repr(ref))
        images.probe(data, what=f"image {ref!r}")
    except storage.StorageError as exc:
        return f"image {ref}: {exc}"
    except images.ImageError as exc:
        return str(exc)
    return None


def _response_problem(response: str | None, split: str) -> str | None:
    if not response:
        return "sft record without a response" if split == "sft" else None
    if not is_well_formed(response):
        return "response is not <think>reasoning</think><answer>answer</answer> (one of each, both non-empty)"
    return None


def _split_files(root: Path) -> dict[str, Path]:
    return {s: root / f"{s}.jsonl" for s in SPLITS if (root / f"{s}.jsonl").is_file()}


def _manifest_problems(root: Path, files: dict[str, Path], data: str) -> list[str]:
    """How the split files differ from what ``manifest.json`` lists (none without a manifest)."""
    problems: list[str] = []
    manifest_path = root / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            listed = manifest.get("files", {})
        except (json.JSONDecodeError, AttributeError):
            problems.append("manifest.json is not a valid manifest")
            listed = {}
        for name, info in listed.items():
            path = root / name
            if not path.is_file():
                problems.append(f"manifest lists {name} but it is missing{REHASH_HINT}")
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != info.get("sha256"):
                problems.append(
                    f"{name} does not match the sha256 in manifest.json (edited after the build? the manifest is "
                    "the dataset's identity in lineage and the gate: if the edit is deliberate, refresh it with "
                    f"`thinkflow data validate {data} --rehash`; else rebuild with `thinkflow build`, which "
                    "reuses the work kept in its journal)"
                )
        for path in files.values():
            if path.name not in listed:
                problems.append(f"{path.name} is not listed in manifest.json{REHASH_HINT}")
    return problems


def check(cfg: ValidateConfig) -> Report:
    """Validate the dataset and return what was found (does not raise for bad records)."""
    root = dataset_root(cfg.data)
    report = Report()
    known = known_verifier_types()
    seen: dict[str, str] = {}
    files = _split_files(root)
    if not files:
        report.dataset_problems.append(f"no split files ({', '.join(f'{s}.jsonl' for s in SPLITS)}) in {cfg.data}")
    for split, path in files.items():
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                report.records += 1
                where = f"{path.name}:{lineno}"
                problems: list[str] = []
                rid = f"<line {lineno}>"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(f"not valid JSON ({exc.msg})")
                    obj = None
                if isinstance(obj, dict):
                    rid = str(obj.get("id") or rid)
                    try:
                        rec = parse_record(obj)
                    except RecordError as exc:
                        problems.append(str(exc).split(": ", 1)[-1])
                        rec = None
                    if rec is not None:
                        if rec.split != split:
                            problems.append(f"field 'split' is {rec.split!r} in {path.name}")
                        if rec.id in seen:
                            problems.append(f"duplicate id (also at {seen[rec.id]})")
                        seen.setdefault(rec.id, where)
                        if rec.verifier_type not in known:
                            problems.append(f"unknown verifier_type {rec.verifier_type!r}")
                        elif sol := solution_problem(rec.verifier_type, rec.solution, rec.meta.get("image_size")):
                            problems.append(f"field 'solution': {sol}")
                        resp = _response_problem(rec.response, split)
                        if resp:
                            problems.append(f"field 'response': {resp}")
                        if cfg.check_images:
                            img = _image_problem(root, rec.image)
                            if img:
                                problems.append(f"field 'image': {img}")
                elif obj is not None:
                    problems.append(f"expected a JSON object, got {type(obj).__name__}")
                for reason in problems:
                    report.problems.append(Problem(where, rid, reason))
                if problems:
                    report.bad_ids.add(f"{split}:{rid}")
    report.manifest_problems = _manifest_problems(root, files, cfg.data)
    return report


def run(cfg: ValidateConfig) -> StageResult:
    """Validate; raise `DataValidationError` naming the bad records when the dataset fails.

    With ``cfg.rehash`` the manifest of a local dataset is refreshed when the records pass (what changed is
    kept in the manifest under ``rehashed``; the result's ``rehashed`` metric is 1 when it was rewritten).
    """
    if cfg.rehash and storage.is_remote(cfg.data):
        raise DataValidationError(
            f"--rehash refreshes a local dataset folder, not {cfg.data}: s3:// datasets are cached by the content "
            "hash of their manifest, so an edit there is not seen; edit a local copy, rehash it and upload the folder"
        )
    report = check(cfg)
    root = dataset_root(cfg.data)
    rehashed = False
    if cfg.rehash and report.records and report.bad_fraction <= cfg.max_bad_fraction:
        if not (root / "manifest.json").is_file():
            raise DataValidationError(f"dataset {cfg.data}: no manifest.json to rehash (build it with thinkflow build)")
        try:
            rehashed = bool(rehash(root))
        except BuildError as exc:
            raise DataValidationError(str(exc)) from None
        report.manifest_problems = _manifest_problems(root, _split_files(root), cfg.data)
    metrics = {
        "records": float(report.records),
        "bad_records": float(len(report.bad_ids)),
        "bad_fraction": report.bad_fraction,
        "problems": float(len(report.problems) + len(report.dataset_problems) + len(report.manifest_problems)),
        **({"rehashed": float(rehashed)} if cfg.rehash else {}),
    }
    too_many = report.bad_fraction > cfg.max_bad_fraction
    if too_many or report.dataset_problems or report.manifest_problems:
        lines = report.dataset_problems + report.manifest_problems
        if too_many:
            lines.insert(
                0,
                f"{len(report.bad_ids)} of {report.records} records are bad "
                f"({report.bad_fraction:.1%} > max_bad_fraction {cfg.max_bad_fraction:.1%})",
            )
            lines += [str(p) for p in report.problems[: cfg.max_listed]]
            if len(report.problems) > cfg.max_listed:
                lines.append(f"… and {len(report.problems) - cfg.max_listed} more problems")
        raise DataValidationError(f"dataset {cfg.data} failed validation:\n  " + "\n  ".join(lines))
    manifest = storage.join(cfg.data, "manifest.json")
    return StageResult(stage="validate", output=cfg.data, metrics=metrics, artifacts={"manifest": manifest})
