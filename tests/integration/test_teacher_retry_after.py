"""429 + Retry-After from a real loopback server: the teacher waits as asked, and so do its other requests."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from thinkflow.data.teachers import Teacher, TeacherConfig, retry_after
from thinkflow.testing.scripted import ScriptedTeacher


def _run(cfg: TeacherConfig, texts: list[str]) -> tuple[list[Any], Teacher]:
    async def main() -> tuple[list[Any], Teacher]:
        t = Teacher("t", cfg)
        try:
            replies = await asyncio.gather(*(t.chat([{"role": "user", "content": x}]) for x in texts))
            return list(replies), t
        finally:
            await t.aclose()

    return asyncio.run(main())


def test_retry_after_pauses_every_request_of_the_teacher() -> None:
    with ScriptedTeacher(lambda ask: "ok", failures=[429], retry_after="1") as srv:
        cfg = TeacherConfig(base_url=srv.url, model="m", concurrency=1, ramp_up=0, backoff=0.01, backoff_max=0.02)
        replies, teacher = _run(cfg, ["a", "b", "c"])
        arrivals = sorted(srv.arrivals)
    assert [r.text for r in replies] == ["ok"] * 3 and all(r.attempts == 2 for r in replies)
    assert teacher.stats.status == {"429": 3}
    # every request's first attempt got 429 + "Retry-After: 1"; after each, nothing reached the server for 1 s
    # although the configured backoff is 0.01-0.02 s and other requests were waiting for the slot
    for (t0, _, n0), (t1, _, _) in itertools.pairwise(arrivals):
        if n0 == 1:
            assert t1 - t0 >= 0.95, arrivals
    for key in {k for _, k, _ in arrivals}:
        first, second = (t for t, k, _ in arrivals if k == key)
        assert second - first >= 0.95


def test_retry_after_is_capped_by_retry_after_max() -> None:
    with ScriptedTeacher(lambda ask: "ok", failures=[429], retry_after="3600") as srv:
        cfg = TeacherConfig(base_url=srv.url, model="m", ramp_up=0, backoff=0.01, backoff_max=0.02, retry_after_max=0.2)
        (reply,), _ = _run(cfg, ["a"])
        (t0, _, _), (t1, _, _) = srv.arrivals
    assert reply.attempts == 2 and t1 - t0 >= 0.19


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_header_forms(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers) == expected


def test_retry_after_as_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    value = retry_after({"retry-after": format_datetime(when, usegmt=True)})
    assert value is not None and 25 <= value <= 31
