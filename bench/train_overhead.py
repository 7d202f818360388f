"""ThinkFlow's GRPO step vs a plain TRL script: same tiny model, data, reward and settings, one process.

The ThinkFlow side is the stage as users run it (`thinkflow.train.stage.run_stage` with
`thinkflow.train.grpo.build_trainer`: resume check, MLflow run and per-step metrics, ThinkFlow's trainer
subclass, checkpoints, final save + lineage); the plain side is `trl.GRPOTrainer` built from the very same
`GRPOConfig` (report_to none). Both get the same step timer (wall and process CPU time).

What is compared is a *rollout*: one generation plus the optimizer steps trained on it (two with the
``tiny-grpo`` batches). Single steps are no good unit: a step that generates takes about twice as long as
one that does not, so a median over steps falls between the two kinds and jumps with noise. Both sides
sample the same tokens (same seed; printed per run), so rollout ``i`` is the same work on both sides: the
headline is the median over rollouts of the paired ratio ThinkFlow / plain (goal <= 1.03), in wall and in
CPU time. One unmeasured warm-up run of each side comes first (the first run in a process pays one-time
costs), then the sides run in the balanced order A B B A A B B A … so neither side is favoured by going
first. The whole-run wall times (ThinkFlow's MLflow run, final save and lineage included) are printed too.

    python bench/train_overhead.py [--steps 16] [--repeats 4] [--threads 1]
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


def rollouts(times: list[tuple[float, float]], steps_per_rollout: int, skip: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per rollout: consecutive optimizer steps summed, the first ``skip`` rollouts left out."""
    whole = len(times) // steps_per_rollout * steps_per_rollout
    out = []
    for start in range(0, whole, steps_per_rollout):
        chunk = times[start : start + steps_per_rollout]
        out.append((sum(t[0] for t in chunk), sum(t[1] for t in chunk)))
    return out[skip:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=4, help="measured runs per side (even: balanced order)")
    parser.add_argument("--warmup", type=int, default=1, help="rollouts per run left out of the figures")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: least noise on a shared machine)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from thinkflow.config import load_config
    from thinkflow.data.synthetic import generate
    from thinkflow.models.tiny import build_tiny
    from thinkflow.train.grpo import GRPOStageConfig, batch_plan

    root = Path(tempfile.mkdtemp(prefix="train_overhead_"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    model = build_tiny(root / "tiny")
    generate(str(root / "data"), 64, seed=0)

    def config(name: str, steps: int) -> Any:
        return load_config(
            GRPOStageConfig,
            "tiny-grpo",
            [
                f"model={model}",
                f"data={root / 'data'}",
                f"output_dir={root / name}",
                f"max_steps={steps}",
                "beta=0.001",
                "save_steps=1000",
                "logging_steps=1",
            ],
        )

    def run(side: str, name: str, steps: int) -> tuple[list[tuple[float, float]], float]:
        cfg = config(name, steps)
        return thinkflow_side(cfg) if side == "thinkflow" else plain_side(cfg, root / name)

    probe = config("probe", args.steps)
    plan = batch_plan(
        probe.rollout_batch_size, probe.train_batch_size, probe.num_generations, probe.per_device_train_batch_size, 1
    )
    per_rollout = plan.updates_per_rollout
    for side in ("thinkflow", "plain"):  # warm-up, not measured
        run(side, f"warm-{side}", 2 * per_rollout)
    results: dict[str, list[list[tuple[float, float]]]] = {"thinkflow": [], "plain": []}
    totals: dict[str, list[float]] = {"thinkflow": [], "plain": []}
    for i in range(args.repeats):
        for side in ("thinkflow", "plain") if i % 2 == 0 else ("plain", "thinkflow"):
            times, total = run(side, f"{side}-{i}", args.steps)
            results[side].append(rollouts(times, per_rollout, args.warmup))
            totals[side].append(total)
    count = sum(len(r) for r in results["thinkflow"])
    print(f"rollouts measured per side: {count} ({per_rollout} optimizer steps each, {args.repeats} runs)")
    for index, label in ((0, "wall"), (1, "CPU ")):
        tf = statistics.median(t[index] for run_ in results["thinkflow"] for t in run_)
        plain = statistics.median(t[index] for run_ in results["plain"] for t in run_)
        paired = [
            a[index] / b[index]
            for tf_run, plain_run in zip(results["thinkflow"], results["plain"], strict=True)
            for a, b in zip(tf_run, plain_run, strict=False)
        ]
        print(
            f"rollout {label} median thinkflow {tf * 1000:8.1f} ms  plain TRL {plain * 1000:8.1f} ms  "
            f"({(tf - plain) * 1000:+7.1f} ms)  paired ratio median {statistics.median(paired):.3f}"
        )
    tf_run, plain_run = statistics.median(totals["thinkflow"]), statistics.median(totals["plain"])
    print(f"median run  wall thinkflow {tf_run:8.2f} s   plain TRL {plain_run:8.2f} s   ratio {tf_run / plain_run:.3f}")


if __name__ == "__main__":
    main()
