"""Benchmark adapters: local or ``s3://`` copies of the paper's six benchmarks (Table 4) in HF ``datasets`` format.

Every adapter turns one row of a benchmark into an `EvalSample` (id, image, question, solution,
verifier_type, group), so generation and scoring are the same for all benchmarks; only the final
aggregation differs (plain accuracy, DynaMath's worst case over variants, WeMath's strict score).

A benchmark copy is either a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
or a folder of parquet files as on the Hub (``data/testmini-00000-of-00001.parquet``,
``testmini/*.parquet``, ``testmini.parquet``). Nothing is downloaded from a hub: the copy is read
from disk, or from ``s3://`` through `thinkflow.storage` (downloaded once into the cache).

The adapters, their default splits and field mappings are documented in README.md ("Evaluation
benchmarks"); ``ADAPTERS`` below is the source of truth.

Field names can be overridden per benchmark with ``fields`` (e.g. ``{"question": "prompt"}``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from thinkflow import images, storage
from thinkflow.errors import ThinkFlowError
from thinkflow.format import LETTERS, mcq_key


class BenchmarkError(ThinkFlowError, ValueError):
    """A benchmark copy that cannot be read or adapted; the message names the benchmark, file, row and field."""


@dataclass
class EvalSample:
    """One evaluation question, whatever benchmark it came from."""

    id: str
    benchmark: str
    question: str
    solution: str
    verifier_type: str
    image: Image.Image
    group: str | None = None  # DynaMath seed question / WeMath problem id
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Adapter:
    """How to read one benchmark: its default split, where its fields are, how a row becomes a sample."""

    name: str
    title: str
    default_split: str
    convert: Callable[[dict[str, Any], RowContext], EvalSample | None]
    score_kind: str = "accuracy"  # accuracy | worst_case | wemath_strict


@dataclass
class RowContext:
    """What an adapter needs besides the row: field overrides, where relative image paths live, the split."""

    benchmark: str
    root: Path
    split: str
    index: int
    fields: dict[str, str]
    uri: str | None = None  # the benchmark's location as given (``s3://`` image URIs must be under it)

    def where(self) -> str:
        return f"{self.benchmark} ({self.root}, split {self.split!r}, row {self.index})"

    def get(self, row: dict[str, Any], key: str, *candidates: str, required: bool = True) -> Any:
        """The value of a logical field: the override in ``fields`` if given, else the first candidate present."""
        names = [self.fields[key]] if key in self.fields else list(candidates or (key,))
        for name in names:
            if name in row and row[name] is not None:
                return row[name]
        if required:
            raise BenchmarkError(f"{self.where()}: missing field {key!r} (looked for {', '.join(names)})")
        return None

    def image(self, row: dict[str, Any], *candidates: str) -> Image.Image:
        value = self.get(row, "image", *candidates)
        return load_image(value, self.root, where=self.where(), uri=self.uri)


def load_image(value: Any, root: Path, *, where: str = "", uri: str | None = None) -> Image.Image:
    """A PIL RGB image from an HF image value, through `thinkflow.images` (inside ``root``, bounded decoding).

    Accepts a PIL image, ``{"bytes", "path"}``, raw bytes, a path (inside ``root``: ``..``, absolute paths and
    symlinks leading out are refused) or an ``s3://`` URI under the benchmark's own location ``uri``.
    """
    try:
        if isinstance(value, Image.Image):
            return images.check_pil(value, what="image").convert("RGB")
        if isinstance(value, dict):
            if value.get("bytes"):
                return images.decode(bytes(value["bytes"]), what=f"image {value.get('path') or '<bytes>'}")
            value = value.get("path")
        if isinstance(value, bytes):
            return images.decode(value, what="image <bytes>")
        if isinstance(value, str) and value:
            if storage.is_remote(value):
                if uri is None or not storage.is_remote(uri) or not storage.within(value, uri):
                    raise images.ImageError(f"image {value!r} is outside the benchmark's location {uri or root}")
                data = images.read_file(storage.localize(value), what=repr(value))
            else:
                data = images.read_file(images.resolve(value, root), what=repr(value))
            return images.decode(data, what=f"image {value!r}")
    except images.ImageError as exc:
        raise BenchmarkError(f"{where}: {exc}") from None
    except (OSError, storage.StorageError) as exc:
        raise BenchmarkError(f"{where}: cannot read image {value!r}: {exc}") from None
    raise BenchmarkError(f"{where}: unsupported image value of type {type(value).__name__}")


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _choices_block(choices: list[Any], header: str = "Choices:") -> str:
    return "\n".join([header, *(f"({LETTERS[i]}) {_text(c)}" for i, c in enumerate(choices))])


# --- adapters ---------------------------------------------------------------------------------


def _mathvista(row: dict[str, Any], ctx: RowContext) -> EvalSample:
    pid = _text(ctx.get(row, "id", "pid"))
    question = ctx.get(row, "question", "query", "question")
    answer = ctx.get(row, "solution", "answer")
    qtype = _text(ctx.get(row, "question_type", "question_type", required=False)) or "free_form"
    atype = _text(ctx.get(row, "answer_type", "answer_type", required=False)) or "text"
    choices = ctx.get(row, "choices", "choices", required=False) or []
    if qtype == "multi_choice" and choices:
        solution, verifier = mcq_key(answer, list(choices)), "mcq"
        if "Choices:" not in question and "(A)" not in question:
            question = f"{question}\n{_choices_block(list(choices))}"
    elif atype == "integer":
        solution, verifier = _text(answer), "digit"
    else:
        solution, verifier = _text(answer), "math"
    meta = {k: row[k] for k in ("precision", "unit", "answer_type", "question_type") if row.get(k) is not None}
    if isinstance(row.get("metadata"), dict):
        meta.update({k: v for k, v in row["metadata"].items() if k in ("category", "task", "grade", "source")})
    return EvalSample(
        pid, ctx.benchmark, _text(question), solution, verifier, ctx.image(row, "decoded_image", "image"), meta=meta
    )


def _mathvision(row: dict[str, Any], ctx: RowContext) -> EvalSample:
    sid = _text(ctx.get(row, "id", "id"))
    question = _text(ctx.get(row, "question", "question"))
    options = list(ctx.get(row, "options", "options", required=False) or [])
    answer = ctx.get(row, "solution", "answer")
    if options:
        question = f"{question}\n{_choices_block(options, 'Options:')}"
        solution, verifier = mcq_key(answer, options), "mcq"
    else:
        solution, verifier = _text(answer), "math"
    meta = {k: row[k] for k in ("level", "subject") if row.get(k) is not None}
    return EvalSample(
        sid, ctx.benchmark, question, solution, verifier, ctx.image(row, "decoded_image", "image"), meta=meta
    )


MATHVERSE_VERSION = "Vision Only"


def _mathverse(row: dict[str, Any], ctx: RowContext) -> EvalSample | None:
    version = _text(ctx.get(row, "problem_version", "problem_version", required=False))
    if version and version != MATHVERSE_VERSION:
        return None
    sid = _text(ctx.get(row, "id", "sample_index", "problem_index"))
    question = _text(ctx.get(row, "question", "query_wo", "question"))
    answer = ctx.get(row, "solution", "answer")
    qtype = _text(ctx.get(row, "question_type", "question_type", required=False))
    if qtype == "multi-choice":
        solution, verifier = mcq_key(answer), "mcq"
    else:
        solution, verifier = _text(answer), "math"
    meta: dict[str, Any] = {"problem_version": version or MATHVERSE_VERSION}
    if isinstance(row.get("metadata"), dict):
        meta.update({k: v for k, v in row["metadata"].items() if k in ("subject", "subfield", "source")})
    return EvalSample(sid, ctx.benchmark, question, solution, verifier, ctx.image(row, "image"), meta=meta)


def _dynamath(row: dict[str, Any], ctx: RowContext) -> EvalSample:
    group = _text(ctx.get(row, "group", "qid", "seed_id", "id"))
    variant = _text(row.get("variant") or ctx.split)
    question = _text(ctx.get(row, "question", "question"))
    answer = ctx.get(row, "solution", "ground_truth", "answer")
    atype = _text(ctx.get(row, "answer_type", "answer_type", required=False)).lower()
    if atype == "multiple choice":
        solution, verifier = mcq_key(answer), "mcq"
    else:
        solution, verifier = _text(answer), "math"
    meta = {"variant": variant, **{k: row[k] for k in ("answer_type", "subject", "knowledge_level") if row.get(k)}}
    return EvalSample(
        f"{group}:{variant}",
        ctx.benchmark,
        question,
        solution,
        verifier,
        ctx.image(row, "decoded_image", "image"),
        group=group,
        meta=meta,
    )


def _wemath(row: dict[str, Any], ctx: RowContext) -> EvalSample:
    pid = _text(ctx.get(row, "group", "ID"))
    key = _text(ctx.get(row, "key", "key"))
    if not re.fullmatch(r"[23]steps_(\d|multi)", key):
        raise BenchmarkError(f"{ctx.where()}: field 'key' must look like 2steps_1 / 3steps_multi, got {key!r}")
    question = _text(ctx.get(row, "question", "question"))
    option = _text(ctx.get(row, "option", "option", required=False))
    if option:
        question = f"{question}\n{option}"
    solution = mcq_key(ctx.get(row, "solution", "answer"))
    meta = {"key": key, **{k: row[k] for k in ("knowledge concept", "split") if row.get(k)}}
    return EvalSample(
        f"{pid}:{key}",
        ctx.benchmark,
        question,
        solution,
        "mcq",
        ctx.image(row, "image_path", "image", "decoded_image"),
        group=pid,
        meta=meta,
    )


def _logicvista(row: dict[str, Any], ctx: RowContext) -> EvalSample:
    sid = _text(ctx.get(row, "id", "index", "id", "imagename", "question_id"))
    question = _text(ctx.get(row, "question", "question"))
    solution = mcq_key(ctx.get(row, "solution", "answer"))
    meta = {k: row[k] for k in ("skill", "reasoning", "category") if row.get(k)}
    return EvalSample(
        sid, ctx.benchmark, question, solution, "mcq", ctx.image(row, "image", "decoded_image"), meta=meta
    )


def _dataset(row: dict[str, Any], ctx: RowContext) -> EvalSample:
    sid = _text(ctx.get(row, "id", "id"))
    return EvalSample(
        sid,
        ctx.benchmark,
        _text(ctx.get(row, "question", "question")),
        _text(ctx.get(row, "solution", "solution")),
        _text(ctx.get(row, "verifier_type", "verifier_type")),
        ctx.image(row, "image"),
        meta={"source": row.get("source", "")},
    )


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter("mathvista", "MathVista (testmini)", "testmini", _mathvista),
        Adapter("mathvision", "MathVision (test)", "test", _mathvision),
        Adapter("mathverse", "MathVerse (testmini, Vision Only)", "testmini", _mathverse),
        Adapter("dynamath", "DynaMath (worst case)", "sample_variant*", _dynamath, score_kind="worst_case"),
        Adapter("wemath", "WeMath (testmini, strict)", "testmini", _wemath, score_kind="wemath_strict"),
        Adapter("logicvista", "LogicVista", "test", _logicvista),
        Adapter("dataset", "Built dataset (eval split)", "eval", _dataset),
    )
}
PAPER_BENCHMARKS: tuple[str, ...] = ("mathvista", "mathvision", "mathverse", "dynamath", "wemath", "logicvista")


def adapter(name: str) -> Adapter:
    """The adapter for a benchmark name (``mathvista``, ..., ``dataset``)."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(ADAPTERS)}") from None


# --- reading HF datasets copies -------------------------------------------------------------


def _parquet_splits(root: Path) -> dict[str, list[Path]]:
    """Parquet files under ``root`` grouped by split.

    The split is named by the file (``split-00000-of-00001.parquet``, ``split.parquet``) or its folder (``split/``).
    """
    splits: dict[str, list[Path]] = {}
    for f in sorted(root.rglob("*.parquet")):
        stem = f.stem
        m = re.match(r"^(.+?)-\d{5}-of-\d{5}", stem) or re.match(r"^(.+?)-\d+$", stem)
        if m:
            name = m.group(1)
        elif f.parent != root and f.parent.name not in ("data",):
            name = f.parent.name
        else:
            name = stem
        splits.setdefault(name, []).append(f)
    return splits


def iter_rows(path: str, split: str, *, where: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Rows ``(split, index, row)`` of a local/``s3://`` HF datasets copy.

    ``split`` may be a glob (``sample_variant*``): every matching split is read, in natural order.
    """
    import datasets

    try:
        root = storage.localize(path)
    except storage.StorageError as exc:
        raise BenchmarkError(f"{where}: {exc}") from None
    if not root.is_dir():
        raise BenchmarkError(f"{where}: {root} is not a directory")
    tables: list[tuple[str, Any]] = []
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        loaded = datasets.load_from_disk(str(root))
        if isinstance(loaded, datasets.DatasetDict):
            names = [n for n in loaded if fnmatch.fnmatchcase(n, split)]
            if not names:
                raise BenchmarkError(f"{where}: no split matching {split!r} in {root} (splits: {', '.join(loaded)})")
            tables = [(n, loaded[n]) for n in sorted(names, key=_natural)]
        else:
            tables = [(split, loaded)]
    else:
        by_split = _parquet_splits(root)
        if not by_split:
            raise BenchmarkError(
                f"{where}: {root} holds neither a saved dataset (dataset_dict.json / state.json) nor parquet files"
            )
        names = [n for n in by_split if fnmatch.fnmatchcase(n, split)]
        if not names and len(by_split) == 1:
            names = list(by_split)
        if not names:
            found = ", ".join(by_split)
            raise BenchmarkError(f"{where}: no parquet split matching {split!r} in {root} (found: {found})")
        for n in sorted(names, key=_natural):
            tables.append((n, datasets.Dataset.from_parquet([str(f) for f in by_split[n]])))
    for name, table in tables:
        for i, row in enumerate(table):
            yield name, i, row


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def load_benchmark(
    name: str,
    path: str,
    *,
    split: str | None = None,
    limit: int | None = None,
    fields: dict[str, str] | None = None,
) -> list[EvalSample]:
    """Read a benchmark copy into `EvalSample`s (``limit`` keeps the first N samples, whole DynaMath/WeMath groups)."""
    spec = adapter(name)
    split = split or spec.default_split
    if name == "dataset":
        return _load_built_dataset(path, split, limit=limit, fields=fields or {})
    root = storage.localize(path) if storage.is_remote(path) else Path(path)
    samples: list[EvalSample] = []
    seen: set[str] = set()
    groups: set[str] = set()
    for split_name, index, row in iter_rows(path, split, where=f"benchmark {name} at {path}"):
        ctx = RowContext(name, root, split_name, index, fields or {}, uri=path)
        sample = spec.convert(row, ctx)
        if sample is None:
            continue
        if limit is not None and sample.group is None and len(samples) >= limit:
            break
        if limit is not None and sample.group is not None and sample.group not in groups and len(groups) >= limit:
            continue
        if sample.id in seen:
            raise BenchmarkError(f"{ctx.where()}: duplicate sample id {sample.id!r}")
        if not sample.solution:
            raise BenchmarkError(f"{ctx.where()}: empty solution for sample {sample.id!r}")
        seen.add(sample.id)
        if sample.group is not None:
            groups.add(sample.group)
        samples.append(sample)
    if not samples:
        raise BenchmarkError(f"benchmark {name} at {path}: no samples in split {split!r}")
    return samples


def _load_built_dataset(path: str, split: str, *, limit: int | None, fields: dict[str, str]) -> list[EvalSample]:
    """The ``split`` of a dataset built by ``thinkflow data build`` (through ``thinkflow.data.load_split``)."""
    from thinkflow.data import load_split

    table = load_split(path, split)
    root = storage.localize(path) if storage.is_remote(path) else Path(path)
    samples = []
    for i, row in enumerate(table):
        if limit is not None and i >= limit:
            break
        samples.append(_dataset(row, RowContext("dataset", root, split, i, fields, uri=path)))
    if not samples:
        raise BenchmarkError(f"dataset {path}: split {split!r} is empty")
    return samples
