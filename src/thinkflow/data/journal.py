"""Append-only, per-step journals: what makes a build resumable after SIGKILL at any moment.

Each build step appends one JSON line per finished record (``{"key": …, "status": …, …}``) with a single
``write(2)`` on an ``O_APPEND`` descriptor as soon as the record's step finishes, and ``fsync``s in the
background (group commit: one ``fsync`` covers every line written before it started, so throughput does not
pay one disk flush per line); a step drains the journal to disk before any record moves on to the next step.

* A killed process loses at most the records whose step had not finished: their line was never written.
* A line is written whole or not at all as far as a kill goes; a torn last line (power loss in the middle of
  a write) is detected on open and truncated, so the record is simply redone.
* On restart the journal is read back; keys already present are skipped, so no finished step (and no
  finished teacher call) is repeated and no record is duplicated.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thinkflow.errors import ThinkFlowError


class JournalError(ThinkFlowError, RuntimeError):
    """A journal file that cannot be read back (corrupt line in the middle); the message names file and line."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _GroupSync:
    """Coalesces ``fsync`` requests on one descriptor (group commit), run in a worker thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.waiters: list[asyncio.Future[None]] = []
        self.dirty = False
        self.task: asyncio.Task[None] | None = None
        self.syncs = 0

    def request(self) -> None:
        """Ask for an fsync covering everything written so far, without waiting for it."""
        self.dirty = True
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def wait(self) -> None:
        """Wait for an fsync that covers everything written before this call."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self.request()
        await fut

    async def _run(self) -> None:
        while self.dirty:
            self.dirty = False
            batch, self.waiters = self.waiters, []
            try:
                await asyncio.to_thread(os.fsync, self.fd)
                self.syncs += 1
            except OSError as exc:
                for fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for fut in batch:
                if not fut.done():
                    fut.set_result(None)


class Journal:
    """One step's journal: ``key -> entry`` read back from disk, plus durable appends."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._entries: dict[str, dict[str, Any]] = {}
        if not created:
            self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if created:
            _fsync_dir(self.path.parent)
        self._group = _GroupSync(self._fd)

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):  # torn last line: the write never completed, the record is redone
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
            data = data[:end]
        for lineno, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JournalError(f"{self.path}:{lineno}: corrupt journal line ({exc.msg})") from None
            if not isinstance(entry, dict) or "key" not in entry:
                raise JournalError(f"{self.path}:{lineno}: journal line without a 'key'")
            self._entries[str(entry["key"])] = entry

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(list(self._entries.values()))

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry (one ``write(2)``); durable after the next `sync` / `append_durable`."""
        if "key" not in entry:
            raise ValueError("journal entries need a 'key'")
        buf = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(buf)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._entries[str(entry["key"])] = entry

    def sync(self) -> None:
        """``fsync`` the journal (every entry appended so far is on disk)."""
        os.fsync(self._fd)

    async def append_durable(self, entry: dict[str, Any]) -> None:
        """Append one entry and wait until it is on disk (group-committed with concurrent appends)."""
        self.append(entry)
        await self._group.wait()

    def append_soon(self, entry: dict[str, Any]) -> None:
        """Append one entry now (a kill cannot lose it) and fsync it in the background (group commit).

        `drain` waits until everything appended is on disk; a build step drains before any record moves
        on to the next step.
        """
        self.append(entry)
        self._group.request()

    async def drain(self) -> None:
        """Wait until every entry appended so far is on disk."""
        await self._group.wait()

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
