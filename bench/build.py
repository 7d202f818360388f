"""Teacher throughput of the dataset build: achieved requests/s against the ideal C / L.

A scripted OpenAI-compatible teacher on loopback answers every request after a fixed latency L; the build
runs its caption and reasoning steps at concurrency C (the real `thinkflow.data.build.run`: AsyncOpenAI,
semaphore, retries, fsynced journal). With no overhead a step sustains C / L requests/s; the goal is
>= 0.9 x C / L at C = 64, L = 200 ms.

Each step's workers start spread over the teacher's ``ramp_up`` (0.25 s), so replies arrive spread out
rather than in waves of C. The teacher runs in a child process by default (``--teacher process``) so that its
own CPU is not charged to the builder; ``--teacher thread`` runs it inside this process.

    python bench/build.py [--n 3200] [--concurrency 64] [--latency 0.2] [--teacher process|thread]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from thinkflow.data.build import BuildConfig, run
from thinkflow.data.scripted import ScriptedTeacher, SyntheticOracle
from thinkflow.data.sources import SyntheticSource
from thinkflow.testing import free_port, wait_http


@contextlib.contextmanager
def teacher(kind: str, n: int, latency: float) -> Iterator[str]:
    if kind == "thread":
        with ScriptedTeacher(SyntheticOracle(n), latency=latency) as srv:
            yield srv.url
        return
    port = free_port()
    cmd = [sys.executable, "-m", "thinkflow.data.scripted", "--port", str(port), "--latency", str(latency)]
    proc = subprocess.Popen([*cmd, "--oracle", str(n)], stdout=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=120, proc=proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3200, help="records (= requests per step; 10 s per step at C/L)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per teacher reply")
    ap.add_argument("--teacher", choices=("process", "thread"), default="process")
    args = ap.parse_args()
    ideal = args.concurrency / args.latency
    with teacher(args.teacher, args.n, args.latency) as url, tempfile.TemporaryDirectory() as tmp:
        spec = {"base_url": url, "concurrency": args.concurrency, "timeout": 60}
        cfg = BuildConfig(
            output=str(Path(tmp, "ds")),
            sources=[SyntheticSource(n=args.n, responses=False)],
            teachers={"caption": {**spec, "model": "captioner"}, "reason": {**spec, "model": "reasoner"}},
            rewrite={"enabled": False},
            verify={"enabled": False},
            tracking=False,
            progress=False,
        )
        run(cfg)
        manifest = json.loads(Path(tmp, "ds", "manifest.json").read_text())
    print(
        f"teacher ({args.teacher}) latency L = {args.latency * 1000:.0f} ms, concurrency C = {args.concurrency}: "
        f"ideal C/L = {ideal:.1f} req/s, {args.n} records (load average {os.getloadavg()[0]:.1f})"
    )
    for step in ("caption", "reason"):
        calls = manifest["calls_this_run"].get(step, 0)
        seconds = manifest["seconds"][step]
        rate = calls / seconds
        cpu_ms = 1000 * manifest["cpu_seconds"][step] / max(1, calls)
        print(
            f"{step:8s} {calls:5d} calls in {seconds:6.2f} s = {rate:6.1f} req/s = {rate / ideal:.3f} x C/L "
            f"(builder CPU {cpu_ms:.2f} ms/request)"
        )


if __name__ == "__main__":
    main()
