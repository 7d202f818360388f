"""Generic source: a JSON-lines (or JSON list) file plus an image folder, with a field mapping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from thinkflow.data.sources.base import Candidate, SourceError, bad_line, local, read_json_records
from thinkflow.data.sources.generic import MappedSource, map_item
from thinkflow.records import RecordError


class JsonlSource(MappedSource):
    """Records from a JSON-lines / JSON-list file; images relative to ``images`` (default: the file's folder)."""

    kind: Literal["jsonl"] = "jsonl"
    path: str = Field(description="JSON-lines or JSON-list file, local or s3://.")
    images: str | None = Field(
        default=None, description="Image root folder (default: the file's folder), local or s3://."
    )


def iter_jsonl(src: JsonlSource) -> Iterator[Candidate]:
    path = local(src.path, f"source {src.name}")
    assert path is not None
    if not path.is_file():
        raise SourceError(f"source {src.name}: {src.path} is not a file")
    root = local(src.images, f"source {src.name} images") if src.images else path.parent
    for pos, item in enumerate(read_json_records(path)):
        if isinstance(item, RecordError):
            yield bad_line(item, f"{src.name}-{pos}")
            continue
        lineno = pos + 1
        yield map_item(item, pos, src, root, f"{path.name}:{lineno}")
