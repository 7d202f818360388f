"""Dataset sources: VLAA-Thinking import, JSON lines + images, HF `datasets` on disk, synthetic scenes.

In a build config, ``sources:`` is a list of mappings, each with a ``kind``:

```yaml
sources:
  - {kind: vlaa, json_file: VLAA-Thinking-SFT-126K.json, images: images/}
  - {kind: jsonl, name: mydocs, path: docs.jsonl, images: docs/, fields: {solution: answer}, verifier_type: open}
  - {kind: hf, name: charts, path: charts_saved/, hf_split: train}
  - {kind: synthetic, n: 200}
```
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from thinkflow.data.sources.base import Candidate, SourceBase, SourceError
from thinkflow.data.sources.hf import HFSource, iter_hf
from thinkflow.data.sources.jsonl import JsonlSource, iter_jsonl
from thinkflow.data.sources.synthetic import SyntheticSource, iter_synthetic
from thinkflow.data.sources.vlaa import DEFAULT_VERIFIER_TABLE, VlaaSource, iter_vlaa

Source = Annotated[VlaaSource | JsonlSource | HFSource | SyntheticSource, Field(discriminator="kind")]

__all__ = [
    "DEFAULT_VERIFIER_TABLE",
    "Candidate",
    "HFSource",
    "JsonlSource",
    "Source",
    "SourceBase",
    "SourceError",
    "SyntheticSource",
    "VlaaSource",
    "iter_candidates",
    "source_name",
]


def source_name(src: SourceBase) -> str:
    """The name a source goes by in messages and the manifest."""
    if src.name:
        return src.name
    if isinstance(src, VlaaSource):
        return f"vlaa:{src.json_file.rstrip('/').rsplit('/', 1)[-1]}"
    return getattr(src, "kind", "source")


def iter_candidates(src: SourceBase, seed: int) -> Iterator[Candidate]:
    """Every input of one source, in a stable order."""
    if isinstance(src, VlaaSource):
        return iter_vlaa(src)
    if isinstance(src, JsonlSource):
        return iter_jsonl(src)
    if isinstance(src, HFSource):
        return iter_hf(src)
    if isinstance(src, SyntheticSource):
        return iter_synthetic(src, seed)
    raise SourceError(f"unknown source kind {type(src).__name__}")
