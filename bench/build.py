"""Teacher throughput of the dataset build: achieved requests/s against the ideal C / L.

A scripted OpenAI-compatible teacher on loopback answers every request after a fixed latency L; the build
runs its caption and reasoning steps at concurrency C (the real `thinkflow.data.build.run`: AsyncOpenAI,
semaphore, retries, fsynced journal). With no overhead, a step sustains C / L requests/s; the goal is
>= 0.9 x C / L at C = 64, L = 200 ms. Both sides run in this one process (the teacher in a thread).

    python bench/build.py [--n 1280] [--concurrency 64] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from thinkflow.data.build import BuildConfig, run
from thinkflow.data.scripted import ScriptedTeacher, SyntheticOracle
from thinkflow.data.sources import SyntheticSource


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1280, help="records (= requests per step)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per teacher reply")
    args = ap.parse_args()
    oracle = SyntheticOracle(args.n)
    ideal = args.concurrency / args.latency
    with ScriptedTeacher(oracle, latency=args.latency) as srv, tempfile.TemporaryDirectory() as tmp:

        def teacher(model: str) -> dict[str, object]:
            return {"base_url": srv.url, "model": model, "concurrency": args.concurrency, "timeout": 60}

        cfg = BuildConfig(
            output=str(Path(tmp, "ds")),
            sources=[SyntheticSource(n=args.n, responses=False)],
            teachers={"caption": teacher("captioner"), "reason": teacher("reasoner")},
            rewrite={"enabled": False},
            verify={"enabled": False},
            tracking=False,
            progress=False,
        )
        run(cfg)
        manifest = json.loads(Path(tmp, "ds", "manifest.json").read_text())
        print(f"teacher latency L = {args.latency * 1000:.0f} ms, concurrency C = {args.concurrency}, "
              f"ideal C/L = {ideal:.1f} req/s, {args.n} requests per step")
        print(f"server-side peak in flight: {srv.max_in_flight}")
        for step in ("caption", "reason"):
            calls = manifest["calls_this_run"].get(step, 0)
            seconds = manifest["seconds"][step]
            rate = calls / seconds
            print(f"{step:8s} {calls:5d} calls in {seconds:6.2f} s = {rate:7.1f} req/s = {rate / ideal:.3f} x C/L")


if __name__ == "__main__":
    main()
