"""How fast the everyday ``thinkflow`` commands answer, side by side with ``python -c pass`` (issue 18).

Each command runs as a fresh process (what a user and a KFP task start-up pay), ``--repeats`` times,
interleaved with the ``python -c pass`` baseline; the median wall time and the median CPU time (user+sys of
the child) are printed with their ratio to the baseline. Inputs are made in a temporary folder first (a
small synthetic dataset, a JSON-lines file of completions, an empty MLflow store), so nothing is downloaded.

The row ``mlflow client alone`` is the floor under ``models list`` / ``promote``: a bare Python process that
imports MLflow's client and asks the same store one question, with no ThinkFlow code.

    python bench/cli_startup.py [--repeats 5] [--only "models list" --only promote]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THINKFLOW = [sys.executable, "-m", "thinkflow.cli"]


def measure(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", action="append", default=[], help="Measure only commands containing this text.")
    args = parser.parse_args()

    from thinkflow.data.synthetic import generate

    tmp = Path(tempfile.mkdtemp(prefix="tf-cli-bench-"))
    try:
        generate(str(tmp / "data"), 10, 0)
        rows = [
            {"completion": "<think>2+2</think><answer>4</answer>", "solution": "4", "verifier_type": "digit"},
            {"completion": "<think>B</think><answer>B</answer>", "solution": "B", "verifier_type": "mcq"},
        ]
        (tmp / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
        commands = {
            "thinkflow --help": ["--help"],
            "thinkflow compile": ["compile", "-o", str(tmp / "pipelines")],
            "thinkflow submit --help": ["submit", "--help"],
            "thinkflow models list": ["models", "list", "thinkflow-vlm"],
            "thinkflow promote": ["promote", "thinkflow-vlm", "1", "--reason", "bench"],
            "thinkflow data validate": ["data", "validate", str(tmp / "data")],
            "thinkflow rewards score": ["rewards", "score", str(tmp / "in.jsonl"), "-o", str(tmp / "out.jsonl")],
        }
        floor = "from mlflow.tracking import MlflowClient\ntry: MlflowClient().get_registered_model('thinkflow-vlm')\n"
        floor += "except Exception: pass"
        commands["mlflow client alone"] = ["-c", floor]
        if args.only:
            commands = {
                k: v for k, v in commands.items() if k == "mlflow client alone" or any(o in k for o in args.only)
            }
        measure([*THINKFLOW, "--help"], env, tmp)  # warm the file cache and the sqlite store once
        measure([*THINKFLOW, "models", "list", "thinkflow-vlm"], env, tmp)
        baseline: list[tuple[float, float]] = []
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, argv in commands.items():
                baseline.append(measure([sys.executable, "-c", "pass"], env, tmp))
                prog = [sys.executable] if argv[0] == "-c" else THINKFLOW
                results[name].append(measure([*prog, *argv], env, tmp))
        base_wall = statistics.median(w for w, _ in baseline)
        base_cpu = statistics.median(c for _, c in baseline)
        print(f"python -c pass: wall {base_wall:.3f}s, cpu {base_cpu:.3f}s (median of {len(baseline)})")
        print(f"{'command':28} {'wall s':>7} {'cpu s':>7} {'wall/pass':>10} {'cpu/pass':>9}")
        for name, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"{name:28} {wall:7.2f} {cpu:7.2f} {wall / base_wall:9.1f}x {cpu / max(base_cpu, 1e-3):8.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
