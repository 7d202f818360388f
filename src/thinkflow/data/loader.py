"""Read a built dataset: one split as a `datasets.Dataset` in the shape TRL's trainers take."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from thinkflow import images, storage
from thinkflow.format import SYSTEM_PROMPT, build_messages, completion_messages
from thinkflow.records import SPLITS, read_records


def _remote_copy(data: str) -> Path:
    """A local copy of a remote dataset, cached by its content hash (a rebuilt dataset is fetched again)."""
    try:
        digest = manifest_hash(data).removeprefix("sha256:")[:24]
    except (FileNotFoundError, ValueError):
        return storage.localize(data)  # no manifest: cached by URI
    target = storage.cache_dir() / "datasets" / digest
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        storage.download(data, staging / "d")
        if target.exists():
            shutil.rmtree(target)
        (staging / "d" / ".complete").write_text(data)
        (staging / "d").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def dataset_root(data: str) -> Path:
    """The local directory of a dataset (``s3://`` URIs are downloaded once per content hash to the cache)."""
    try:
        root = _remote_copy(data) if storage.is_remote(data) else storage.localize(data)
    except storage.StorageError as exc:
        raise FileNotFoundError(f"dataset {data}: {exc}") from None
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {data}: not a directory")
    return root


def load_manifest(data: str) -> dict[str, Any]:
    """The dataset's ``manifest.json``."""
    uri = storage.join(data, "manifest.json")
    try:
        text = storage.read_text(uri)
    except (OSError, storage.StorageError):
        raise FileNotFoundError(f"dataset {data}: no manifest.json (was it built by thinkflow?)") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{uri}: not valid JSON ({exc.msg})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{uri}: expected a JSON object")
    return manifest


def manifest_hash(data: str) -> str:
    """The content hash recorded in the dataset's ``manifest.json`` (``sha256:…``)."""
    manifest = load_manifest(data)
    value = manifest.get("content_hash")
    if not isinstance(value, str) or not value:
        raise ValueError(f"dataset {data}: manifest.json has no content_hash")
    return value


def _image_path(root: Path, ref: str, where: str) -> str:
    """The local file of a record's image: inside the dataset directory (see `thinkflow.images.resolve`), or an
    ``s3://`` URI (downloaded to the cache)."""
    if storage.is_remote(ref):
        return str(storage.localize(ref))
    try:
        return str(images.resolve(ref, root))
    except images.ImageError as exc:
        raise FileNotFoundError(f"{where}: {exc}") from None


def split_file(data: str, split: str) -> tuple[Path, Path]:
    """``(dataset root, <split>.jsonl)`` of a built dataset; errors name the dataset and the splits present."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = dataset_root(data)
    path = root / f"{split}.jsonl"
    if not path.is_file():
        present = [s for s in SPLITS if (root / f"{s}.jsonl").is_file()]
        raise FileNotFoundError(f"dataset {data}: no {split}.jsonl (splits present: {', '.join(present) or 'none'})")
    return root, path


def check_split(data: str, split: str) -> int:
    """Fail fast on a split that cannot be trained or evaluated on: missing, not JSON lines, a record that
    does not fit the schema, an image file that is not there, or no records. Returns the record count."""
    root, path = split_file(data, split)
    count = 0
    for rec in read_records(path):
        _image_path(root, rec.image, f"{path}: record {rec.id}")
        count += 1
    if count == 0:
        raise ValueError(f"dataset {data}: {path.name} has no records")
    return count


def load_split(data: str, split: str, *, system_prompt: str | None = SYSTEM_PROMPT) -> Any:
    """One split of a built dataset as a `datasets.Dataset`.

    Columns: ``id``, ``question``, ``solution``, ``verifier_type``, ``image`` (decoded to a PIL image on
    access), ``prompt`` (conversational, `thinkflow.format.build_messages`: the system prompt unless it is empty,
    then the image and the question; the evaluation builds its prompts with the same function) and, when any
    row has a response, ``completion`` (the assistant turn; ``None`` for rows without one). ``data`` is a
    dataset directory or ``s3://`` URI.
    """
    import datasets

    root, path = split_file(data, split)
    cols: dict[str, list[Any]] = {k: [] for k in ("id", "question", "solution", "verifier_type", "image", "prompt")}
    completions: list[Any] = []
    for rec in read_records(path):
        cols["id"].append(rec.id)
        cols["question"].append(rec.question)
        cols["solution"].append(rec.solution)
        cols["verifier_type"].append(rec.verifier_type)
        cols["image"].append(_image_path(root, rec.image, f"{path}: record {rec.id}"))
        cols["prompt"].append(build_messages(rec.question, system_prompt))
        completions.append(completion_messages(rec.response) if rec.response else None)
    if any(c is not None for c in completions):
        cols["completion"] = completions
    ds = datasets.Dataset.from_dict(cols)
    return ds.cast_column("image", datasets.Image())
