"""SIGKILL a real `thinkflow build` at several points; the restarted build loses, duplicates and repeats nothing.

The scripted teacher (a real HTTP server on loopback, in this process) counts on its side every reply it
served, per request. It holds the requests of one model after its N-th reply, so each kill lands while
teacher calls are in flight: those were never answered, so redoing them is no repeat. After the last run,
every request must have been served exactly once, and the dataset must equal a build that was never killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from thinkflow.data.build import BuildConfig, run
from thinkflow.data.sources import SyntheticSource
from thinkflow.testing.scripted import ScriptedTeacher, SyntheticOracle

N = 40


def _config(out: Path, url: str) -> BuildConfig:
    teacher = {"base_url": url, "concurrency": 6, "timeout": 120}
    return BuildConfig(
        output_dir=str(out),
        sources=[SyntheticSource(n=N, responses=False)],
        eval_fraction=0.1,
        teachers={
            "caption": {**teacher, "model": "captioner"},
            "reason": {**teacher, "model": "reasoner"},
            "rewrite": {**teacher, "model": "rewriter"},
            "judge": {**teacher, "model": "judge"},
        },
        tracking=False,
        progress=False,
    )


def _journal(out: Path, name: str) -> list[dict]:
    path = out / ".build" / name
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]  # complete lines only
    return [json.loads(line) for line in lines if line.strip()]


def _wait(cond: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"build exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _start(cfg_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "thinkflow.cli", "build", "--config", str(cfg_path)])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_at_any_step_loses_and_repeats_nothing(tmp_path: Path) -> None:
    oracle = SyntheticOracle(N)
    out = tmp_path / "ds"
    cfg_path = tmp_path / "build.yaml"
    with ScriptedTeacher(oracle, hold_after={"captioner": 0}) as srv:
        cfg_path.write_text(yaml.safe_dump(_config(out, srv.url).model_dump(mode="json")))

        # 1. during step 1 (collect), or at the latest while every caption request is held
        proc = _start(cfg_path)
        _wait(lambda: len(_journal(out, "1-collect.jsonl")) >= 5 or srv.held > 0, proc, "collect")
        _kill(proc)

        # 2. during captioning, with 13 captions served and journaled and the next ones in flight
        srv.hold_after = {"captioner": 13}
        proc = _start(cfg_path)
        _wait(lambda: srv.held > 0 and len(_journal(out, "2-caption.jsonl")) == 13, proc, "13 captions")
        _kill(proc)

        # 3. during reasoning
        srv.hold_after = {"reasoner": 17}
        proc = _start(cfg_path)
        _wait(
            lambda: srv.served_per_model["reasoner"] == 17 and len(_journal(out, "3-reason.jsonl")) == 17,
            proc,
            "17 reasonings",
        )
        _kill(proc)

        # 4. during rewriting (only records that mention the caption are sent to the rewriter)
        srv.hold_after = {"rewriter": 2}

        def rewrites_journaled() -> bool:
            done = [e for e in _journal(out, "4-rewrite.jsonl") if e.get("usage")]
            return srv.served_per_model["rewriter"] == 2 and len(done) == 2

        proc = _start(cfg_path)
        _wait(rewrites_journaled, proc, "2 rewrites")
        _kill(proc)

        # 5. run to the end
        srv.hold_after = {}
        proc = _start(cfg_path)
        assert proc.wait(timeout=300) == 0

        assert not srv.errors
        assert srv.served and max(srv.served.values()) == 1, "a finished teacher call was repeated"
        assert srv.served_per_model["captioner"] == N
        served_total = sum(srv.served.values())

    with ScriptedTeacher(SyntheticOracle(N)) as ref_srv:
        reference = tmp_path / "ref"
        run(_config(reference, ref_srv.url))
        assert sum(ref_srv.served.values()) == served_total  # the same calls, each once

    for name in ("sft.jsonl", "rl.jsonl", "eval.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    ref_manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["content_hash"] == ref_manifest["content_hash"]
    assert manifest["tokens"] == ref_manifest["tokens"]
    ids = [
        json.loads(line)["id"] for s in ("sft", "rl", "eval") for line in (out / f"{s}.jsonl").read_text().splitlines()
    ]
    assert len(ids) == len(set(ids))
    assert len(ids) + manifest["counts"]["rejected"] == N
    for name in ("1-collect.jsonl", "2-caption.jsonl", "3-reason.jsonl", "4-rewrite.jsonl", "5-verify.jsonl"):
        keys = [e["key"] for e in _journal(out, name)]
        assert len(keys) == len(set(keys)), f"duplicate journal entries in {name}"
