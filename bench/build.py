"""Teacher throughput of the dataset build: achieved requests/s against the ideal C / L.

A scripted OpenAI-compatible teacher on loopback answers every request after a fixed latency L; the build
runs its caption and reasoning steps at concurrency C (the real `thinkflow.data.build.run`: AsyncOpenAI,
semaphore, retries, fsynced journal). With no overhead a step sustains C / L requests/s; the goal is
>= 0.9 x C / L at C = 64, L = 200 ms.

Each step's workers start spread over the teacher's ``ramp_up`` (0.25 s), so replies arrive spread out
rather than in waves of C. The teacher runs in a child process by default (``--teacher process``) so that its
own CPU is not charged to the builder; ``--teacher thread`` runs it inside this process.

    python bench/build.py [--n 3200] [--concurrency 64] [--latency 0.2] [--teacher process|thread]

Sharded (issue 14): ``--shards N`` runs N shard processes (``build --shard I/N``, each at concurrency C)
against one teacher process; they import first and start together, and each step's aggregate rate is
sum(calls) / max(step seconds) against the ideal N·C/L. ``--merge 126000`` writes 8 synthetic shards of
that many records in total and times `thinkflow.data.merge.merge_shards` in a child process (peak RSS
from ``getrusage``), against the goal of 60 s and 2 GiB.

    python bench/build.py --shards 1,2,4,8 [--n 400 (per shard)] [--concurrency 16] [--latency 0.5]
    python bench/build.py --merge 126000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from thinkflow.data.build import BuildConfig, run
from thinkflow.data.sources import SyntheticSource
from thinkflow.testing import free_port, wait_http
from thinkflow.testing.scripted import ScriptedTeacher, SyntheticOracle


@contextlib.contextmanager
def teacher(kind: str, n: int, latency: float) -> Iterator[str]:
    if kind == "thread":
        with ScriptedTeacher(SyntheticOracle(n), latency=latency) as srv:
            yield srv.url
        return
    port = free_port()
    cmd = [sys.executable, "-m", "thinkflow.testing.scripted", "--port", str(port), "--latency", str(latency)]
    proc = subprocess.Popen([*cmd, "--oracle", str(n)], stdout=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=120, proc=proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _shard_cfg(out: Path, url: str, n: int, concurrency: int, shard: str | None) -> BuildConfig:
    spec = {"base_url": url, "concurrency": concurrency, "timeout": 60}
    return BuildConfig(
        output_dir=str(out),
        sources=[SyntheticSource(n=n, responses=False)],
        teachers={"caption": {**spec, "model": "captioner"}, "reason": {**spec, "model": "reasoner"}},
        rewrite={"enabled": False},
        verify={"enabled": False},
        tracking=False,
        progress=False,
        shard=shard,
    )


def worker(args: argparse.Namespace) -> None:
    """One shard process: ready file, wait for the start file, build the shard."""
    out = Path(args.out)
    cfg = _shard_cfg(out / "shard", args.url, args.total, args.concurrency, args.worker)
    (out / "ready").touch()
    while not Path(args.go).exists():
        time.sleep(0.01)
    run(cfg)


def sharded(args: argparse.Namespace) -> None:
    counts = [int(x) for x in args.shards.split(",")]
    print(
        f"{len(counts)} runs: N shard processes x C = {args.concurrency} against one teacher process, latency "
        f"L = {args.latency * 1000:.0f} ms, {args.n} records per shard (load average {os.getloadavg()[0]:.1f})"
    )
    for count in counts:
        ideal = count * args.concurrency / args.latency
        with teacher("process", args.n * count, args.latency) as url, tempfile.TemporaryDirectory() as tmp:
            go = Path(tmp, "go")
            procs = []
            for i in range(count):
                out = Path(tmp, f"s{i}")
                out.mkdir()
                cmd = [sys.executable, __file__, "--worker", f"{i}/{count}", "--out", str(out), "--url", url]
                cmd += ["--total", str(args.n * count), "--concurrency", str(args.concurrency), "--go", str(go)]
                procs.append(subprocess.Popen(cmd))
            while not all(Path(tmp, f"s{i}", "ready").exists() for i in range(count)):
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a shard process failed to start")
                time.sleep(0.05)
            go.touch()
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("a shard process failed")
            shards = [json.loads(Path(tmp, f"s{i}", "shard", "shard.json").read_text()) for i in range(count)]
            for step in ("caption", "reason"):
                calls = sum(m["calls_this_run"].get(step, 0) for m in shards)
                seconds = max(m["seconds"][step] for m in shards)
                rate = calls / seconds
                print(
                    f"N = {count}  {step:8s} {calls:5d} calls in {seconds:6.2f} s = {rate:7.1f} req/s = "
                    f"{rate / ideal:.3f} x N·C/L (ideal {ideal:.0f})"
                )


def _merge_child(root: str) -> None:
    import resource

    from thinkflow.data.merge import merge_shards

    dirs = sorted(p for p in Path(root).iterdir() if p.name.startswith("shard-"))
    start = time.perf_counter()
    manifest = merge_shards(dirs, Path(root, "out"))
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "rss": rss, "records": manifest["counts"]["total"]}))


def merge_bench(args: argparse.Namespace) -> None:
    """8 synthetic shards of ``args.merge`` records in all (VLAA-sized responses), merged in a child process."""
    import hashlib

    from thinkflow.data.build_config import SHARD_FILE, SHARD_FORMAT, SHARD_MANIFEST, shard_of
    from thinkflow.data.scenes import iter_scenes

    count = 8
    scenes = list(iter_scenes(50, 0))
    think = "Let me look at the image carefully and count what is there. " * 25
    cfg = BuildConfig(output_dir="unused", tracking=False, progress=False).model_dump(mode="json")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        dirs = [Path(tmp, f"shard-{i}") for i in range(count)]
        files = []
        for d in dirs:
            (d / "images").mkdir(parents=True)
            files.append(open(d / SHARD_FILE, "w", encoding="utf-8"))  # noqa: SIM115
        images = []
        for scene in scenes:
            data = scene.png()
            name = f"images/{hashlib.sha256(data).hexdigest()[:32]}.png"
            for d in dirs:
                (d / name).write_bytes(data)
            images.append(name)
        for pos in range(args.merge):
            scene = scenes[pos % len(scenes)]
            rid = f"vlaa-{pos}"
            rec = {
                "id": rid,
                "image": images[pos % len(images)],
                "question": scene.question,
                "solution": scene.solution,
                "verifier_type": scene.verifier_type,
                "response": f"<think>{think}{pos}</think><answer>{scene.solution}</answer>",
                "caption": "A picture of shapes. " * 10,
                "source": "bench",
                "split": "sft" if pos % 4 else "rl",
                "meta": {"original_image": f"bench/{pos}.png", "image_size": [224, 224]},
            }
            row = {"order": [0, pos], "source": "bench", "id": rid, "split_mode": "keep", "record": rec}
            files[shard_of(rid, count)].write(json.dumps(row, ensure_ascii=False) + "\n")
        for i, (d, fh) in enumerate(zip(dirs, files, strict=True)):
            fh.close()
            digest = hashlib.sha256((d / SHARD_FILE).read_bytes()).hexdigest()
            zero = {"calls": 0, "prompt": 0, "completion": 0, "attempts": 0}
            manifest = {
                "format": SHARD_FORMAT,
                "shard": f"{i}/{count}",
                "fingerprint": "bench",
                "candidates": 0,
                "kept": 0,
                "rejected": 0,
                "sha256": digest,
                "not_sampled": {},
                "tokens": {"total": zero},
                "served_models": {},
                "build_config": cfg,
            }
            (d / SHARD_MANIFEST).write_text(json.dumps(manifest))
        size = sum((d / SHARD_FILE).stat().st_size for d in dirs)
        print(
            f"wrote {count} shards, {args.merge} records, {size / 2**20:.0f} MiB in {time.perf_counter() - start:.1f} s"
        )
        out = subprocess.run(
            [sys.executable, __file__, "--merge-child", tmp], check=True, capture_output=True, text=True
        ).stdout
        res = json.loads(out.strip().splitlines()[-1])
    print(
        f"merge of {res['records']} records: {res['seconds']:.1f} s ({res['seconds'] / 60:.2f} x the 60 s goal), "
        f"peak RSS {res['rss'] / 2**30:.2f} GiB ({res['rss'] / 2**31:.2f} x the 2 GiB goal) "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3200, help="records (= requests per step; 10 s per step at C/L)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds per teacher reply")
    ap.add_argument("--teacher", choices=("process", "thread"), default="process")
    ap.add_argument("--shards", help="comma-separated shard counts N: N shard processes (--n records each)")
    ap.add_argument("--merge", type=int, help="merge this many synthetic records from 8 shards")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--merge-child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--go", help=argparse.SUPPRESS)
    ap.add_argument("--total", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.merge_child:
        return _merge_child(args.merge_child)
    if args.shards:
        return sharded(args)
    if args.merge:
        return merge_bench(args)
    ideal = args.concurrency / args.latency
    with teacher(args.teacher, args.n, args.latency) as url, tempfile.TemporaryDirectory() as tmp:
        spec = {"base_url": url, "concurrency": args.concurrency, "timeout": 60}
        cfg = BuildConfig(
            output_dir=str(Path(tmp, "ds")),
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
