"""ThinkFlow's GRPO step vs a plain TRL script: same tiny model, data, reward and settings, one process.

The ThinkFlow side is the stage as users run it (`thinkflow.train.stage.run_stage` with
`thinkflow.train.grpo.build_trainer`: resume check, MLflow run and per-step metrics, ThinkFlow's trainer
subclass, checkpoints, final save + lineage); the plain side is `trl.GRPOTrainer` built from the very same
`GRPOConfig` (report_to none). Both get the same wall-clock step timer. The sides alternate (A B A B …)
to spread machine-load noise; the script prints the median optimizer-step time of each side and the
ratio ThinkFlow / plain (goal ≤ 1.05) in wall and in process CPU time, plus whole-run wall times (which
include ThinkFlow's MLflow run, final save and lineage).

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
    """Wall-clock and process CPU seconds of every optimizer step (between consecutive step ends).

    CPU time (all threads of the process, MLflow's logging thread included) is the robust figure on a
    shared machine: other jobs stretch wall time, not the work this process does.
    """

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []
        self.tokens = 0  # prompt + completion tokens processed: the same on both sides when the work is equal
        self._last: tuple[float, float] | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._last is None:
            self._last = (time.perf_counter(), time.process_time())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tokens = int(state.num_input_tokens_seen)
        now = (time.perf_counter(), time.process_time())
        if self._last is not None:
            self.times.append((now[0] - self._last[0], now[1] - self._last[1]))
        self._last = now


def digit_fraction(completions: list[Any], **kwargs: Any) -> list[float]:
    """A cheap reward with variance (the same function on both sides)."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def thinkflow_side(cfg: Any) -> tuple[list[tuple[float, float]], float]:
    from thinkflow.train import grpo
    from thinkflow.train.stage import run_stage

    timer = StepTimer()

    def prepare(c: Any, model_dir: Path, root: Path, callbacks: list[Any]) -> Any:
        return grpo.build_trainer(c, model_dir, root, [*callbacks, timer], reward_funcs=[digit_fraction])

    start = time.perf_counter()
    run_stage("grpo", cfg, prepare)
    print(f"thinkflow run: {timer.tokens} tokens")
    return timer.times, time.perf_counter() - start


def plain_side(cfg: Any, workdir: Path) -> tuple[list[tuple[float, float]], float]:
    from transformers import AutoModelForImageTextToText
    from trl import GRPOTrainer

    import thinkflow.models.processor  # noqa: F401 - registers the tiny model's image-only processor
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
    print(f"plain TRL run: {timer.tokens} tokens")
    return timer.times, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="steps per run left out of the medians")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: least noise on a shared machine)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from thinkflow.config import load_config
    from thinkflow.data.synthetic import generate
    from thinkflow.models.tiny import build_tiny
    from thinkflow.train.grpo import GRPOStageConfig

    root = Path(tempfile.mkdtemp(prefix="train_overhead_"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    model = build_tiny(root / "tiny")
    generate(str(root / "data"), 64, seed=0)
    results: dict[str, list[tuple[float, float]]] = {"thinkflow": [], "plain": []}
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
    print(f"steps measured per side: {len(results['thinkflow'])} / {len(results['plain'])}")
    for index, label in ((0, "wall"), (1, "CPU ")):
        tf = statistics.median(t[index] for t in results["thinkflow"])
        plain = statistics.median(t[index] for t in results["plain"])
        ratio = tf / plain
        print(f"median step {label} thinkflow {tf * 1000:8.1f} ms  plain TRL {plain * 1000:8.1f} ms  ratio {ratio:.3f}")
    tf_run, plain_run = statistics.median(totals["thinkflow"]), statistics.median(totals["plain"])
    print(f"median run  wall thinkflow {tf_run:8.2f} s   plain TRL {plain_run:8.2f} s   ratio {tf_run / plain_run:.3f}")


if __name__ == "__main__":
    main()
