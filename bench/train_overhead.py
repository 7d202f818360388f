"""ThinkFlow's GRPO step vs a plain TRL script: same tiny model, data, reward and settings, one process.

The ThinkFlow side is the stage as users run it (`thinkflow.train.common.run_stage` with
`thinkflow.train.grpo.build_trainer`: resume check, MLflow run and per-step metrics, ThinkFlow's trainer
subclass, checkpoints, final save + lineage); the plain side is `trl.GRPOTrainer` built from the very same
`GRPOConfig` (report_to none). Both get the same wall-clock step timer. The sides alternate (A B A B …)
to spread machine-load noise; the script prints the median optimizer-step time of each side and the
ratio ThinkFlow / plain (goal ≤ 1.05), plus whole-run times (which include ThinkFlow's final save/lineage).

    python bench/train_overhead.py [--steps 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall-clock seconds of every optimizer step (between consecutive step ends)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def digit_fraction(completions: list[Any], **kwargs: Any) -> list[float]:
    """A cheap reward with variance (the same function on both sides)."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def thinkflow_side(cfg: Any) -> tuple[list[float], float]:
    from thinkflow.train import grpo
    from thinkflow.train.common import run_stage

    timer = StepTimer()

    def prepare(c: Any, model_dir: Path, root: Path, callbacks: list[Any]) -> Any:
        return grpo.build_trainer(c, model_dir, root, [*callbacks, timer], reward_funcs=[digit_fraction])

    start = time.perf_counter()
    run_stage("grpo", cfg, prepare)
    return timer.times, time.perf_counter() - start


def plain_side(cfg: Any, workdir: Path) -> tuple[list[float], float]:
    from transformers import AutoModelForImageTextToText
    from trl import GRPOTrainer

    import thinkflow  # noqa: F401 - the tiny model's image-only processor
    from thinkflow.data import load_split
    from thinkflow.train.grpo import batch_plan, trl_args

    timer = StepTimer()
    start = time.perf_counter()
    plan = batch_plan(
        cfg.rollout_batch_size, cfg.train_batch_size, cfg.num_generations, cfg.per_device_train_batch_size, 1
    )
    args = trl_args(cfg, workdir, plan)
    dataset = load_split(cfg.data, "rl").select_columns(["prompt", "image", "solution", "verifier_type"])
    model = AutoModelForImageTextToText.from_pretrained(cfg.model)
    model.model.visual.requires_grad_(False)  # same setting as the stage: vision tower frozen
    trainer = GRPOTrainer(
        model=model, reward_funcs=[digit_fraction], args=args, train_dataset=dataset, callbacks=[timer]
    )
    trainer.train()
    trainer.save_model(str(workdir / "final"))
    return timer.times, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="steps per run left out of the medians")
    args = parser.parse_args()

    from thinkflow.config import load_config
    from thinkflow.data.synthetic import generate
    from thinkflow.models.tiny import build_tiny
    from thinkflow.train.grpo import GRPOStageConfig

    root = Path(tempfile.mkdtemp(prefix="train_overhead_"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    model = build_tiny(root / "tiny")
    generate(str(root / "data"), 64, seed=0)
    results: dict[str, list[float]] = {"thinkflow": [], "plain": []}
    totals: dict[str, list[float]] = {"thinkflow": [], "plain": []}
    for i in range(args.repeats):
        cfg = load_config(
            GRPOStageConfig,
            "tiny-grpo",
            [
                f"model={model}",
                f"data={root / 'data'}",
                f"output_dir={root / f'tf-{i}'}",
                f"max_steps={args.steps}",
                "beta=0.001",
                "save_steps=1000",
                "logging_steps=1",
            ],
        )
        for side in ("thinkflow", "plain") if i % 2 == 0 else ("plain", "thinkflow"):
            if side == "thinkflow":
                times, total = thinkflow_side(cfg)
            else:
                times, total = plain_side(cfg, root / f"plain-{i}")
            results[side].extend(times[args.warmup :])
            totals[side].append(total)
    tf, plain = statistics.median(results["thinkflow"]), statistics.median(results["plain"])
    print(f"steps measured per side: {len(results['thinkflow'])} / {len(results['plain'])}")
    print(f"median step  thinkflow {tf * 1000:8.1f} ms   plain TRL {plain * 1000:8.1f} ms   ratio {tf / plain:.3f}")
    tf_run, plain_run = statistics.median(totals["thinkflow"]), statistics.median(totals["plain"])
    print(f"median run   thinkflow {tf_run:8.2f} s    plain TRL {plain_run:8.2f} s    ratio {tf_run / plain_run:.3f}")


if __name__ == "__main__":
    main()
