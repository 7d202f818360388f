"""The append-only journal: read back, torn last line, corrupt lines, group-committed durable appends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from thinkflow.data.journal import Journal, JournalError


def test_append_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "j" / "2-caption.jsonl"
    with Journal(path) as j:
        j.append({"key": "a", "status": "ok", "out": {"caption": "é"}})
        j.append({"key": "b", "status": "rejected", "reason": "x"})
        j.sync()
        assert "a" in j and len(j) == 2
    again = Journal(path)
    assert [e["key"] for e in again] == ["a", "b"]
    assert again.get("a") == {"key": "a", "status": "ok", "out": {"caption": "é"}}
    again.close()


def test_torn_last_line_is_dropped_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"key":"a","status":"ok"}\n{"key":"b","sta')
    j = Journal(path)
    assert [e["key"] for e in j] == ["a"]
    j.append({"key": "b", "status": "ok"})
    j.close()
    assert path.read_bytes() == b'{"key":"a","status":"ok"}\n{"key":"b","status":"ok"}\n'


def test_corrupt_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"key":"a"}\nnot json\n{"key":"c"}\n')
    with pytest.raises(JournalError, match=r"j.jsonl:2: corrupt"):
        Journal(path)
    path.write_text('{"nokey":1}\n')
    with pytest.raises(JournalError, match="without a 'key'"):
        Journal(path)


def test_append_needs_key(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.jsonl") as j, pytest.raises(ValueError, match="key"):
        j.append({"status": "ok"})


def test_durable_appends_are_group_committed(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)

    async def main() -> None:
        await asyncio.gather(*(j.append_durable({"key": str(i), "status": "ok"}) for i in range(200)))

    asyncio.run(main())
    assert j._group.syncs < 200  # several appends share one fsync
    j.close()
    assert len(path.read_text().splitlines()) == 200
    assert sorted(int(e["key"]) for e in Journal(path)) == list(range(200))
