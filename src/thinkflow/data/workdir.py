"""The build's work dir: the lock, the per-step journals, the config fingerprint, timers and progress bars.

`BuildState` is what the steps share (`thinkflow.data.collect`, `thinkflow.data.distill`,
`thinkflow.data.manifest`): the config, the shard, the output dir being written (``stage``) and the journal dir
(``work``). The file helpers (`write_atomic`, `sha256_file`, `locked`) are the merge's too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from thinkflow import storage
from thinkflow.data.build_config import STEPS, WORK_DIRNAME, BuildConfig, BuildError, parse_shard
from thinkflow.data.journal import Journal
from thinkflow.data.prompts import Prompts


@contextlib.contextmanager
def locked(work: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``work`` (created): a second build or merge there fails at once."""
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(work / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another build is running with the work dir {work}") from None
        yield
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique: threads may write the same image
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def staging_dir(output: str, kind: str) -> Path:
    """Where an output is written locally (created): the folder itself, or for an ``s3://`` output a folder
    in the cache (``CACHE/kind/HASH``) that is then published to it."""
    if storage.is_remote(output):
        digest = hashlib.sha256(output.rstrip("/").encode()).hexdigest()[:16]
        stage = storage.cache_dir() / kind / digest
    else:
        stage = Path(output).expanduser()
    stage.mkdir(parents=True, exist_ok=True)
    return stage


def stage_dirs(cfg: BuildConfig) -> tuple[Path, Path]:
    """``(stage, work)``: where the output is written locally, and the journal dir."""
    stage = staging_dir(cfg.output_dir, "build")
    work = Path(cfg.work_dir).expanduser() if cfg.work_dir else stage / WORK_DIRNAME
    return stage, work


def fingerprint(cfg: BuildConfig, prompts: Prompts) -> dict[str, Any]:
    """What the journals of steps 1-5 depend on (endpoints, concurrency and step 6 may change freely)."""
    teachers = {
        name: t.model_dump(include={"model", "temperature", "max_tokens", "extra_body"}, mode="json")
        for name, t in cfg.teachers
        if t is not None
    }
    return {
        "sources": [s.model_dump(mode="json") for s in cfg.sources],
        "seed": cfg.seed,
        "dedupe": cfg.dedupe,
        "teachers": teachers,
        "rewrite": cfg.rewrite.model_dump(mode="json"),
        "verify": cfg.verify.model_dump(mode="json"),
        "prompts": prompts.digest(),
        "layout": 2,  # shard + merge: rank-based sampling cap, images in the shard dir
    }


class BuildState:
    """One shard's build in progress: its config, dirs, journals and accounting."""

    def __init__(self, cfg: BuildConfig, stage: Path, work: Path) -> None:
        self.cfg = cfg
        self.shard = parse_shard(cfg.shard) if cfg.shard else (0, 1)
        self.stage = stage
        self.work = work
        self.prompts = Prompts(cfg.prompts)
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.calls_this_run: Counter[str] = Counter()
        self.not_sampled: dict[str, int] = {}  # per source: candidates outside the sampling cap
        self.journals: dict[str, Journal] = {}

    def journal_path(self, step: str) -> Path:
        return self.work / f"{STEPS.index(step) + 1}-{step}.jsonl"

    def journal(self, step: str) -> Journal:
        if step not in self.journals:
            self.journals[step] = Journal(self.journal_path(step))
        return self.journals[step]

    def has_journal(self, step: str) -> bool:
        """True when ``step`` ran (in this process or an earlier one)."""
        return step in self.journals or self.journal_path(step).exists()

    def close(self) -> None:
        for j in self.journals.values():
            j.close()

    def check_fingerprint(self) -> dict[str, Any]:
        """The build's fingerprint, written to the work dir; an error when the journals there are another
        config's."""
        fp = fingerprint(self.cfg, self.prompts)
        if self.shard[1] > 1:
            fp["shard"] = "{}/{}".format(*self.shard)
        path = self.work / "fingerprint.json"
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if old != fp:
                keys = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
                raise BuildError(
                    f"{self.work} holds the journal of a build with a different config (differs in: "
                    f"{', '.join(keys)}); use another output_dir/work_dir, or delete {self.work} to start over"
                )
        else:
            write_atomic(path, json.dumps(fp, indent=2, sort_keys=True).encode())
        return fp

    def bar(self, step: str, total: int | None, initial: int) -> Any:
        return tqdm(
            total=total,
            initial=initial,
            desc=f"[{STEPS.index(step) + 1}/6] {step}",
            unit="rec",
            disable=not self.cfg.progress,
            mininterval=0.5,
        )
