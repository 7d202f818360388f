"""Generic source: a Hugging Face `datasets` dataset on disk (``save_to_disk`` arrow, parquet, imagefolder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from thinkflow.data.sources.base import Candidate, SourceError, local
from thinkflow.data.sources.generic import DEFAULT_COLUMNS, MappedSource, map_item


class HFSource(MappedSource):
    """A dataset saved with ``save_to_disk``, parquet file(s), or an imagefolder (with ``metadata.jsonl``)."""

    kind: Literal["hf"] = "hf"
    path: str = Field(description="Dataset dir (save_to_disk / imagefolder), parquet file or dir; local or s3://.")
    format: Literal["auto", "arrow", "parquet", "imagefolder"] = Field(
        default="auto",
        description="How to read `path`; auto: arrow if saved with save_to_disk, parquet if .parquet files.",
    )
    hf_split: str = Field(default="train", description="Which split of a DatasetDict / imagefolder to read.")
    images: str | None = Field(default=None, description="Root for relative image paths (default: the dataset dir).")


def _detect(path: Path) -> str:
    if path.is_file() and path.suffix == ".parquet":
        return "parquet"
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return "arrow"
        if any(path.rglob("*.parquet")):
            return "parquet"
        return "imagefolder"
    raise SourceError(f"{path}: not a dataset directory or parquet file")


def _load(src: HFSource, path: Path) -> Any:
    import datasets

    fmt = src.format if src.format != "auto" else _detect(path)
    try:
        if fmt == "arrow":
            ds: Any = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if src.hf_split not in ds:
                    raise SourceError(f"{path}: no split {src.hf_split!r} (has {', '.join(ds)})")
                ds = ds[src.hf_split]
            return ds
        if fmt == "parquet":
            files = [str(path)] if path.is_file() else sorted(str(p) for p in path.rglob("*.parquet"))
            return datasets.load_dataset("parquet", data_files=files, split="train")
        return datasets.load_dataset("imagefolder", data_dir=str(path), split=src.hf_split)
    except SourceError:
        raise
    except Exception as exc:  # datasets raises many types; name the source and path
        raise SourceError(f"source {src.name}: cannot load {path} as {fmt}: {exc}") from None


def iter_hf(src: HFSource) -> Iterator[Candidate]:
    import datasets

    path = local(src.path, f"source {src.name}")
    assert path is not None
    ds = _load(src, path)
    image_col = src.fields.get("image")
    if image_col is None:
        image_col = next((c for c in DEFAULT_COLUMNS["image"] if c in ds.column_names), None)
    if image_col and "." not in image_col and isinstance(ds.features.get(image_col), datasets.Image):
        ds = ds.cast_column(image_col, datasets.Image(decode=False))
    root = local(src.images, f"source {src.name} images") if src.images else (path if path.is_dir() else path.parent)
    for pos, item in enumerate(ds):
        yield map_item(dict(item), pos, src, root, f"{src.name}[{pos}]")
