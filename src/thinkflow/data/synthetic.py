"""``thinkflow data synth``: a synthetic dataset, the embedded default (see `thinkflow.data.scenes`).

`generate` runs the regular build (`thinkflow.data.build.run`) with one ``synthetic`` source and no teachers, so
the output has the same layout, manifest and checks as any built dataset.
"""

from __future__ import annotations

from thinkflow.config import StageResult
from thinkflow.data.build import BuildConfig, run
from thinkflow.data.sources import SyntheticSource


def generate(
    out: str,
    n: int,
    seed: int = 0,
    *,
    eval_fraction: float = 0.1,
    responses: bool = True,
    progress: bool = False,
) -> StageResult:
    """Write a synthetic dataset of ``n`` records to ``out`` (a directory or ``s3://`` URI); the build's result."""
    cfg = BuildConfig(
        output_dir=str(out),
        seed=seed,
        sources=[SyntheticSource(n=n, seed=seed, eval_fraction=eval_fraction, responses=responses)],
        tracking=False,
        progress=progress,
    )
    return run(cfg)
