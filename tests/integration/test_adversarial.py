"""Untrusted input, tried as an attacker or a careless source would (issue 17). Every input is built here.

Each case: the run finishes (or fails with one clear line where failing is right), every good record is kept, and
nothing outside the roots is opened.

"Nothing outside the roots is opened" is checked with a CPython audit hook (`sys.addaudithook`) on the ``open``
event, which `open`, `io.open` and `os.open` all raise, in every thread of the process: the hook records every
open of a path under the test's ``outside/`` folder. Access times are no proof (relatime/noatime mounts) and
strace is not available here; the hook sees the opens themselves. The decompression-bomb build runs in a
subprocess, whose peak RSS is the VmHWM of its own address space, read by the child at exit (see the test).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from thinkflow import images
from thinkflow.data.build import BuildConfig, run
from thinkflow.data.sources import JsonlSource, VlaaSource
from thinkflow.data.teachers import Teacher, TeacherConfig, TeacherError
from thinkflow.evaluate.benchmarks import BenchmarkError, load_image
from thinkflow.images import ImageLimits
from thinkflow.pipelines.remote import SubmitError, read_params
from thinkflow.records import RecordError, iter_jsonl, read_jsonl
from thinkflow.rewards.mixed import MixedReward, score
from thinkflow.rewards.open_ended import HTTPScorer, OpenEndedReward, ScorerError
from thinkflow.rewards.serve import ScorerServer
from thinkflow.testing import free_port

# Peak RSS allowed for a whole `thinkflow data import-vlaa` subprocess that meets the 40000×40000 bomb. Decoding
# the bomb would take 1.6 GB (PIL stores mode "1" one byte per pixel); the CLI build itself peaks near 85 MiB.
RSS_BOUND_BYTES = 256 * 1024 * 1024

# ------------------------------------------------------------------------------------------ the audit hook
_WATCHED: list[str] = []
_OPENED: list[str] = []
_HOOKED = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not _WATCHED or not args:
        return
    target = args[0]
    if isinstance(target, bytes):
        target = target.decode(errors="replace")
    if not isinstance(target, str):
        target = getattr(target, "__fspath__", lambda: "")()
    if isinstance(target, str) and any(target == w or target.startswith(w + os.sep) for w in _WATCHED):
        _OPENED.append(target)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A folder outside every root holding a perfectly valid image (read, it would be imported), audited."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_hook)  # cannot be removed: it only records while _WATCHED is set
        _HOOKED = True
    out = tmp_path / "outside"
    out.mkdir()
    _png(out / "secret.png", (250, 0, 250))
    real = os.path.realpath(out)
    _WATCHED[:] = sorted({str(out), real})
    _OPENED.clear()
    yield out
    _WATCHED.clear()
    assert not _OPENED, f"files outside the roots were opened: {_OPENED}"


# ------------------------------------------------------------------------------------------------ inputs
def _png(path: Path, color: tuple[int, int, int], size: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 40000) -> bytes:
    """A valid 1-bit PNG of side×side black pixels: ~190 KB for 40000 (1.6 Gpx), built row block by row block."""
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = bytearray()
    block = row * 1000
    for start in range(0, side, 1000):
        idat += comp.compress(block if side - start >= 1000 else row * (side - start))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", bytes(idat)) + _chunk(b"IEND", b"")


GOOD = ("good-1", "good-2", "good-3", "allava-slash", "id/with/../separators")


def _vlaa_set(tmp_path: Path, outside: Path) -> tuple[Path, Path, dict[str, str]]:
    """An image root and a GRPO-file of records: five good ones and one of every attack; -> (json, root, expected)."""
    root = tmp_path / "root"
    imgs = root / "imgs"
    _png(imgs / "a.png", (255, 0, 0))
    _png(imgs / "b.png", (0, 255, 0))
    _png(imgs / "c.png", (0, 0, 255))
    _png(root / "allava_laion" / "d.png", (9, 9, 9))  # published as "/allava_laion/d.png": relative to the root
    _png(imgs / "e.png", (99, 0, 9))
    (imgs / "bomb.png").write_bytes(bomb_png())
    whole = _png(imgs / "whole.png", (1, 2, 3), size=64)
    (imgs / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (imgs / "zero.png").write_bytes(b"")
    (imgs / "text.png").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (imgs / "link.png").symlink_to(outside / "secret.png")
    os.mkfifo(imgs / "fifo.png")  # opened, it would block the build forever
    rel_out = os.path.relpath(outside / "secret.png", imgs)
    cases = {
        "good-1": ("imgs/a.png", None),
        "good-2": ("imgs/b.png", None),
        "good-3": ("./imgs/../imgs/c.png", None),
        "allava-slash": ("/allava_laion/d.png", None),
        "id/with/../separators": ("imgs/e.png", None),
        "dotdot": (f"imgs/{rel_out}", "leaves the image root with '..'"),
        "absolute": (str(outside / "secret.png"), "absolute path outside the image root"),
        "symlink": ("imgs/link.png", "outside the image root"),
        "urlenc": ("imgs/..%2f..%2foutside%2fsecret.png", "once URL-decoded"),
        "bomb": ("imgs/bomb.png", "decompression bomb"),
        "truncated": ("imgs/truncated.png", "truncated or corrupt PNG"),
        "zero": ("imgs/zero.png", "empty file (0 bytes)"),
        "text": ("imgs/text.png", "not an image"),
        "fifo": ("imgs/fifo.png", "not a regular file"),
        "nul\x00id": ("imgs/a.png", "control characters"),
    }
    rows = [
        {"id": rid, "image": ref, "question": "How many objects?", "gt": "3", "verifier_type": "digit"}
        for rid, (ref, _) in cases.items()
    ]
    path = tmp_path / "train-grpo.json"
    path.write_text(json.dumps(rows))
    return path, root, {rid: why for rid, (_, why) in cases.items() if why}


def _rejected(out: Path) -> dict[str, str]:
    return {r["id"]: r["reason"] for r in read_jsonl(out / "rejected.jsonl")}


def _kept(out: Path) -> set[str]:
    files = [out / f"{s}.jsonl" for s in ("sft", "rl", "eval")]
    return {r["id"] for f in files if f.exists() for r in read_jsonl(f)}


# ------------------------------------------------------------------------------------------------- build
def test_vlaa_build_rejects_each_attack_once_and_keeps_every_good_record(tmp_path: Path, outside: Path) -> None:
    path, root, expected = _vlaa_set(tmp_path, outside)
    out = tmp_path / "ds"
    src = VlaaSource(json_file=str(path), images=str(root), verifier_table={})
    run(BuildConfig(output_dir=str(out), sources=[src], eval_fraction=0.0, tracking=False, progress=False))
    assert _kept(out) == set(GOOD)
    rejected = _rejected(out)
    assert set(rejected) == set(expected)
    for rid, why in expected.items():
        assert why in rejected[rid], (rid, rejected[rid])
        assert "<_io." not in rejected[rid] and "BytesIO" not in rejected[rid]
    assert not list(outside.iterdir())[1:]  # nothing written outside either: only secret.png is there


def test_pixel_limit_is_configurable(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    _png(root / "big.png", (5, 5, 5), size=300)
    _png(root / "small.png", (6, 6, 6), size=20)
    rows = [
        {"id": "big", "image": "big.png", "question": "q", "solution": "1", "verifier_type": "digit"},
        {"id": "small", "image": "small.png", "question": "q", "solution": "1", "verifier_type": "digit"},
    ]
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ds"
    src = JsonlSource(name="s", path=str(root / "rows.jsonl"))
    cfg = BuildConfig(
        output_dir=str(out),
        sources=[src],
        image_limits=ImageLimits(max_pixels=10_000, max_bytes=1 << 20),
        eval_fraction=0.0,
        tracking=False,
        progress=False,
    )
    run(cfg)
    assert _kept(out) == {"s-small"}
    assert "300×300 = 90,000 pixels is over the limit of 10,000" in _rejected(out)["s-big"]


def test_a_50mb_json_line_is_one_rejected_record(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    _png(root / "a.png", (1, 1, 1))
    _png(root / "b.png", (2, 2, 2))
    good = {"image": "a.png", "question": "q", "solution": "1", "verifier_type": "digit"}
    huge = {**good, "id": "huge", "question": "x" * (50 * 1024 * 1024)}
    with open(root / "rows.jsonl", "w") as fh:
        fh.write(json.dumps({**good, "id": "one"}) + "\n")
        fh.write(json.dumps(huge) + "\n")
        fh.write(json.dumps({**good, "id": "two", "image": "b.png"}) + "\n")
    del huge
    out = tmp_path / "ds"
    src = JsonlSource(name="s", path=str(root / "rows.jsonl"))
    run(BuildConfig(output_dir=str(out), sources=[src], eval_fraction=0.0, tracking=False, progress=False))
    assert _kept(out) == {"s-one", "s-two"}
    assert "rows.jsonl:2: line of 52,428,8" in _rejected(out)["s-1"]
    with pytest.raises(RecordError, match=r"rows\.jsonl:2: line of .* bytes is longer than the limit"):
        list(iter_jsonl(root / "rows.jsonl"))


def test_import_vlaa_cli_with_a_bomb_stays_small_and_builds_the_rest(tmp_path: Path, outside: Path) -> None:
    """`thinkflow data import-vlaa` in a subprocess: the bomb and the traversal are one rejected record each."""
    root = tmp_path / "root"
    _png(root / "a.png", (10, 20, 30))
    _png(root / "b.png", (30, 20, 10))
    (root / "bomb.png").write_bytes(bomb_png())
    assert len((root / "bomb.png").read_bytes()) < 300_000
    rows = [
        {"id": "a", "image": "a.png", "question": "q", "gt": "2", "verifier_type": "digit"},
        {"id": "bomb", "image": "bomb.png", "question": "q", "gt": "2", "verifier_type": "digit"},
        {"id": "b", "image": "b.png", "question": "q", "gt": "2", "verifier_type": "digit"},
        {"id": "up", "image": "../outside/secret.png", "question": "q", "gt": "2", "verifier_type": "digit"},
    ]
    (tmp_path / "train-grpo.json").write_text(json.dumps(rows))
    out = tmp_path / "ds"
    # The child's own high-water mark: VmHWM of its address space after exec, read by itself at exit. (`wait4`'s
    # ru_maxrss would not do: Linux folds the RSS of the address space replaced at exec, here the forking pytest
    # worker's, into the child's ru_maxrss, so a worker that had loaded torch read ~900 MiB for an 85 MiB build.)
    hwm = tmp_path / "status"
    code = (
        "import sys\nfrom thinkflow.cli import app\nsys.argv[0] = 'thinkflow'\ntry:\n    app()\nfinally:\n"
        f"    open({str(hwm)!r}, 'w').write(open('/proc/self/status').read())\n"
    )
    args = ["data", "import-vlaa", "--json", str(tmp_path / "train-grpo.json"), "--images", str(root)]
    args += ["--output", str(out), "--set", "tracking=false", "--set", "progress=false", "--set", "eval_fraction=0"]
    env = {**os.environ, "THINKFLOW_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-c", code, *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read() if proc.stdout else b""
    proc.wait()
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    (line,) = [x for x in hwm.read_text().splitlines() if x.startswith("VmHWM:")]
    peak = int(line.split()[1]) * 1024  # kB
    print(f"import-vlaa with a 40000x40000 bomb: peak RSS {peak / 2**20:.0f} MiB (bound {RSS_BOUND_BYTES / 2**20:.0f})")
    assert peak < RSS_BOUND_BYTES
    assert _kept(out) == {"a", "b"}
    rejected = _rejected(out)
    assert set(rejected) == {"bomb", "up"}
    assert "decompression bomb" in rejected["bomb"] and "leaves the image root" in rejected["up"]


# ---------------------------------------------------------------------------------------- evaluation input
def test_benchmark_images_stay_inside_the_copy(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "bench"
    _png(root / "ok.png", (3, 3, 3))
    (root / "link.png").symlink_to(outside / "secret.png")
    assert load_image("ok.png", root, where="b").size == (24, 24)
    for ref, why in [
        ("../outside/secret.png", "leaves the image root"),
        (str(outside / "secret.png"), "absolute path outside"),
        ("link.png", "outside the image root"),
        ("%2e%2e/outside/secret.png", "URL-decoded"),
        ("s3://other-bucket/secret.png", "outside the benchmark's location"),
    ]:
        with pytest.raises(BenchmarkError, match=why):
            load_image(ref, root, where="b")
    with pytest.raises(BenchmarkError, match="decompression bomb"):
        load_image({"bytes": bomb_png(), "path": "bomb.png"}, root, where="b")


def test_s3_uris_and_keys_cannot_leave_their_prefix() -> None:
    from thinkflow import storage

    assert storage.within("s3://b/bench/img/1.png", "s3://b/bench")
    assert not storage.within("s3://b/bench/../secret/x.png", "s3://b/bench")
    assert not storage.within("s3://b/benchmark2/x.png", "s3://b/bench")
    assert not storage.within("s3://c/bench/x.png", "s3://b/bench")
    with pytest.raises(storage.StorageError, match="leaves"):
        storage.join("s3://b/data", "../../other/manifest.json")


def test_params_file_over_the_limit_is_one_clear_error(tmp_path: Path) -> None:
    big = tmp_path / "params.yaml"
    big.write_text("a: " + "x" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(SubmitError, match=r"params\.yaml: .* bytes is over the limit"):
        read_params(big)


# ---------------------------------------------------------------------------------------------- teachers
class HostileTeacher:
    """An OpenAI-compatible endpoint on loopback that answers 10 MB, never ends its stream, or trickles."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_event: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        mode = body["model"]
        if mode == "huge":
            text = "A" * (10 * 1024 * 1024)
            reply = {"model": mode, "choices": [{"message": {"role": "assistant", "content": text}}]}
            return web.json_response(reply)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"model": "x", "choices": [{"message": {"content": "')
        while True:  # never ends: fast for "endless", one byte a second for "trickle"
            await resp.write(b"A" * (65536 if mode == "endless" else 1))
            await asyncio.sleep(0 if mode == "endless" else 1.0)

    def __enter__(self) -> HostileTeacher:
        from aiohttp import web

        async def models(request: Any) -> Any:
            return web.json_response({"data": []})

        async def serve() -> None:
            app = web.Application(client_max_size=1 << 20)
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_get("/v1/models", models)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self.stop_event = asyncio.Event()
            self.ready.set()
            await self.stop_event.wait()
            await runner.cleanup()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(serve(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


async def _ask(url: str, model: str, **cfg: Any) -> str:
    teacher = Teacher("hostile", TeacherConfig(base_url=url, model=model, max_retries=0, **cfg))
    try:
        await teacher.chat([{"role": "user", "content": "hi"}])
    except TeacherError as exc:
        return f"{'retryable' if exc.retryable else 'final'}: {exc}"
    finally:
        await teacher.aclose()
    return "answered"


def test_a_teacher_that_answers_10mb_or_never_ends_is_cut_off() -> None:
    with HostileTeacher() as server:
        huge = asyncio.run(_ask(server.url, "huge"))
        endless = asyncio.run(_ask(server.url, "endless"))
        trickle = asyncio.run(_ask(server.url, "trickle", timeout=2.0))
    # non-retryable: the build journals the record as rejected with this reason (data/build.py `_run_step`)
    assert huge.startswith("final:") and "over max_reply_bytes=8,388,608" in huge
    assert endless.startswith("final:") and "passed max_reply_bytes=8,388,608 and was cut off" in endless
    assert trickle.startswith("retryable:") and "timed out after 2s" in trickle


# ----------------------------------------------------------------------------------------------- rewards
MB = 1024 * 1024


@pytest.mark.parametrize(
    "completion",
    [
        "a" * MB,
        "<think>" + "wait " * (MB // 5) + "</think><answer>3</answer>",
        "<answer>" + "1+" * (MB // 2) + "</answer>",
        "\\boxed{" * (MB // 7),
        "<think>" * (MB // 7),
    ],
    ids=["plain", "long-think", "long-answer", "nested-boxed", "open-tags"],
)
@pytest.mark.parametrize("vtype", ["digit", "mcq", "math", "iou"])
def test_a_1mb_completion_scores_without_hanging(completion: str, vtype: str) -> None:
    solution = {"digit": "3", "mcq": "A", "math": "3", "iou": "[0, 0, 1, 1]"}[vtype]
    reward = score(completion, solution, vtype, image_size=(10, 10))
    assert 0.0 <= reward <= 2.0


class _Count:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, image: Any, question: str, answers: Any) -> list[float]:
        self.seen.extend(answers)
        return [float(len(a) % 7) for a in answers]


def test_a_1mb_open_answer_is_not_sent_to_the_reward_model() -> None:
    counter = _Count()
    with ScorerServer(counter) as server:
        reward = OpenEndedReward(HTTPScorer(server.url, retries=0))
        out = reward.rewards([None, None], ["q", "q"], ["ref", "ref"], ["x" * MB, "short"])
    assert out[0] == 0.0
    assert all(len(a) < 100 for a in counter.seen) and "short" in counter.seen
    mixed = MixedReward(scorer=counter)
    batch = mixed.score_batch(["<answer>" + "y" * MB + "</answer>"], ["ref"], ["open"], questions=["q"])
    assert batch.accuracy == [0.0]


def test_a_reward_model_that_answers_10mb_is_one_clear_error() -> None:
    class Flood:
        def score(self, image: Any, question: str, answers: Any) -> list[float]:
            return [0.5] * (2 * MB)

    with ScorerServer(Flood()) as server, pytest.raises(ScorerError, match=r"over the limit of 1,048,576 bytes"):
        HTTPScorer(server.url, retries=0).score(None, "q", ["a"])
    with pytest.raises(ScorerError, match=r"request of .* bytes is over the limit"):
        HTTPScorer("http://127.0.0.1:9/score", retries=0, max_request_bytes=1000).score(None, "q", ["a" * 2000])


def test_image_errors_are_readable() -> None:
    for data, why in [(b"", "empty file"), (b"hello", "not an image"), (bomb_png(), "decompression bomb")]:
        with pytest.raises(images.ImageError, match=why) as info:
            images.probe(data, what="image 'x.png'")
        assert str(info.value).startswith("image 'x.png': ") and "BytesIO" not in str(info.value)
