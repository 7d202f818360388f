"""The synthetic source: PIL-drawn scenes with known answers (see `thinkflow.data.scenes`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from thinkflow.data.scenes import assign_splits, iter_scenes
from thinkflow.data.sources.base import Candidate, ImageLoader, SourceBase
from thinkflow.images import ImageLimits


class SyntheticSource(SourceBase):
    """``n`` synthetic scenes, balanced across verifier types, split rl/sft/eval by seed."""

    kind: Literal["synthetic"] = "synthetic"
    n: int = Field(default=200, ge=1, description="Number of scenes.")
    seed: int | None = Field(default=None, description="Scene seed (default: the build seed).")
    eval_fraction: float = Field(default=0.1, ge=0.0, lt=1.0, description="Held-out eval share per verifier type.")
    responses: bool = Field(
        default=True,
        description="Give every record a reference <think>/<answer> response and a split; false leaves both "
        "to the build (teachers distil the responses, step 6 splits).",
    )


def iter_synthetic(src: SyntheticSource, build_seed: int) -> Iterator[Candidate]:
    seed = build_seed if src.seed is None else src.seed
    splits = assign_splits(src.n, seed, src.eval_fraction) if src.responses else [""] * src.n
    for scene, split in zip(iter_scenes(src.n, seed), splits, strict=True):
        record = {
            "question": scene.question,
            "solution": scene.solution,
            "verifier_type": scene.verifier_type,
            "response": scene.response(reflective=split == "rl") if src.responses else None,
            "caption": None,
            "source": src.name or "synthetic",
            "split": split or None,
            "meta": scene.meta(),
        }
        yield Candidate(scene.id, record, _png(scene), f"<synthetic scene {scene.index}>")


def _png(scene: Any) -> ImageLoader:
    def load(limits: ImageLimits) -> bytes:
        return bytes(scene.png())

    return load
