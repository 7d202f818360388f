"""`thinkflow run` cold, and the share of it that is KFP orchestration (kfp.local) vs the stage functions.

Two sides, each a fresh Python process on a fresh root (new sqlite MLflow store, tiny model built, no
cache), alternated when repeated:

- **kfp**: ``python -m thinkflow.cli run --root R --pipeline P`` — the README's main command: kfp.local
  starts one subprocess per task (interpreter start, imports, executor, artifact handling, MLflow parent
  run lookups) and runs the pipeline's DAG.
- **direct**: the same stage functions with the same configs (built exactly as the components build them,
  `thinkflow.config.stage_config`), called one after the other in ONE process under one
  MLflow parent run.

Printed: both wall times, the ratio kfp / direct, the orchestration share 1 - direct / kfp, and per task
the task's wall time in kfp.local vs the stage function's own time inside it (from the task logs).

    python bench/local_run.py [--pipeline vlaa_thinker|sft_then_grpo] [--repeats 1]
    python bench/local_run.py --pipeline sft_vs_rl_study --no-direct     # the study, kfp side only
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

COLOR = r"(?:\x1b\[\d+m)?"
TASK_START = re.compile(rf"^(\d\d:\d\d:\d\d\.\d+) - INFO - Executing task {COLOR}'([\w-]+)'")
TASK_END = re.compile(rf"^(\d\d:\d\d:\d\d\.\d+) - INFO - Task {COLOR}'([\w-]+)'{COLOR} finished with status")
STAGE_TIME = re.compile(r"stage (\w+) finished in ([\d.]+)s")


def kfp_side(pipeline: str, root: Path) -> tuple[float, str]:
    """Wall time of `thinkflow run` in a fresh process, and its output."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "thinkflow.cli", "run", "--pipeline", pipeline, "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
        raise SystemExit(f"thinkflow run failed (exit {proc.returncode})")
    return wall, proc.stdout


def task_times(log: str) -> list[tuple[str, float, float | None]]:
    """(task, wall seconds in kfp.local, seconds of the stage function inside it) from the run's log."""
    starts: dict[str, datetime] = {}
    rows: list[tuple[str, float, float | None]] = []
    stage_seconds: list[float] = []
    for line in log.splitlines():
        if m := TASK_START.search(line):
            starts[m.group(2)] = datetime.strptime(m.group(1), "%H:%M:%S.%f")
            stage_seconds = []
        elif m := STAGE_TIME.search(line):
            stage_seconds.append(float(m.group(2)))
        elif (m := TASK_END.search(line)) and m.group(2) in starts:
            wall = (datetime.strptime(m.group(1), "%H:%M:%S.%f") - starts[m.group(2)]).total_seconds()
            rows.append((m.group(2), wall, sum(stage_seconds) if stage_seconds else None))
    return rows


def direct_side(pipeline: str, root: Path) -> float:
    """Wall time of the direct side, in a fresh process (this script with --direct)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--direct", str(root), "--pipeline", pipeline],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"direct side failed (exit {proc.returncode})")
    return wall


def run_direct(pipeline: str, root: Path) -> None:
    """The pipeline's stages called in this process, with the configs the components would build."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        THINKFLOW_CACHE=str(root / "cache"),
        THINKFLOW_WORKSPACE=str(root / "workspace"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    import mlflow

    from thinkflow import env
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.data.build import BuildConfig
    from thinkflow.data.build import run as build
    from thinkflow.data.validate import ValidateConfig
    from thinkflow.data.validate import run as validate
    from thinkflow.evaluate import EvalConfig
    from thinkflow.evaluate import run as evaluate
    from thinkflow.evaluate.tasks import with_eval_dataset
    from thinkflow.pipelines.common import LOCAL_PRESETS
    from thinkflow.pipelines.local import _experiment_id, default_arguments, tiny_model
    from thinkflow.registry import RegisterConfig, register
    from thinkflow.tracking import close_parent_run, open_parent_run
    from thinkflow.train.grpo import GRPOStageConfig
    from thinkflow.train.grpo import run as grpo
    from thinkflow.train.sft import SFTConfig
    from thinkflow.train.sft import run as sft

    model = str(tiny_model(root))
    args = default_arguments(pipeline, model)
    out = root / "direct"
    client = mlflow.MlflowClient()
    exp = _experiment_id(client, "thinkflow-local", root / "mlartifacts")
    os.environ[env.PARENT_RUN_ID] = client.create_run(exp, run_name=f"direct-{pipeline}").info.run_id
    ws = str(root / "workspace")
    open_parent_run(pipeline, {"model": model}, workspace=ws)
    data = str(out / "dataset")
    runtime.run_stage(
        build,
        stage_config(
            BuildConfig, LOCAL_PRESETS["data"], None, output_dir=data, work_dir=str(runtime.workspace_dir(ws, "build"))
        ),
    )
    runtime.run_stage(validate, stage_config(ValidateConfig, None, None, data=data))
    base = model
    if pipeline == "sft_then_grpo":
        cfg = stage_config(
            SFTConfig,
            LOCAL_PRESETS["sft"],
            None,
            model=model,
            data=data,
            output_dir=str(out / "sft"),
            checkpoint_dir=str(runtime.workspace_dir(ws, "checkpoints", "sft")),
        )
        base = runtime.run_stage(sft, cfg).output
    trained = runtime.run_stage(
        grpo,
        stage_config(
            GRPOStageConfig,
            LOCAL_PRESETS["grpo"],
            args["grpo_overrides"],
            model=base,
            data=data,
            output_dir=str(out / "grpo"),
            checkpoint_dir=str(runtime.workspace_dir(ws, "checkpoints", "grpo")),
        ),
    ).output
    eval_cfg = stage_config(
        EvalConfig, LOCAL_PRESETS["eval"], args["eval_overrides"], model=trained, output_dir=str(out / "eval")
    )
    evaluated = runtime.run_stage(evaluate, with_eval_dataset(eval_cfg, data)).output
    runtime.run_stage(register, stage_config(RegisterConfig, None, None, model=trained, eval=evaluated))
    close_parent_run("SUCCEEDED")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="vlaa_thinker")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-direct", action="store_true", help="Only the kfp side (e.g. for the study).")
    parser.add_argument("--direct", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct:
        run_direct(args.pipeline, args.direct)
        return
    if not args.no_direct and args.pipeline not in ("vlaa_thinker", "sft_then_grpo"):
        raise SystemExit("the direct side covers vlaa_thinker and sft_then_grpo; use --no-direct for the study")
    kfp_walls: list[float] = []
    direct_walls: list[float] = []
    logs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-local-run-") as tmp:
        for i in range(args.repeats):
            wall, log = kfp_side(args.pipeline, Path(tmp, f"kfp-{i}"))
            kfp_walls.append(wall)
            logs.append(log)
            print(f"[{i}] kfp.local  thinkflow run: {wall:6.1f} s", flush=True)
            if not args.no_direct:
                direct_walls.append(direct_side(args.pipeline, Path(tmp, f"direct-{i}")))
                print(f"[{i}] direct     stage calls:   {direct_walls[-1]:6.1f} s", flush=True)
    kfp_wall = statistics.median(kfp_walls)
    print(f"\npipeline {args.pipeline}, {os.cpu_count()} CPUs, median of {args.repeats}")
    goal = "   (goal <= 180 s)" if args.pipeline == "vlaa_thinker" else ""
    print(f"thinkflow run (kfp.local, cold):   {kfp_wall:6.1f} s{goal}")
    rows: list[Any] = task_times(logs[-1])
    if direct_walls:
        direct_wall = statistics.median(direct_walls)
        print(f"stage functions called directly:  {direct_wall:6.1f} s")
        print(f"ratio kfp / direct:                {kfp_wall / direct_wall:6.2f}")
        print(f"orchestration share of the run:    {100 * (1 - direct_wall / kfp_wall):5.1f} %")
    if rows:
        print("\nper task (last kfp run): task wall in kfp.local | stage function inside | overhead")
        for task, wall, stage in rows:
            inner = f"{stage:6.1f} s" if stage is not None else "     – "
            extra = f"{wall - stage:6.1f} s" if stage is not None else f"{wall:6.1f} s"
            print(f"  {task:<22} {wall:6.1f} s | {inner} | {extra}")


if __name__ == "__main__":
    main()
