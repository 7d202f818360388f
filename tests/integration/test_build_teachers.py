"""The teacher client against a real HTTP server on loopback: retries, errors, timeouts, concurrency, usage."""

from __future__ import annotations

import asyncio

import pytest

from thinkflow.data.teachers import Teacher, TeacherConfig, TeacherError, image_part
from thinkflow.testing.scripted import Ask, ScriptedTeacher


def _cfg(url: str, **kw: object) -> TeacherConfig:
    base = {"base_url": url, "model": "m", "backoff": 0.01, "backoff_max": 0.05}
    return TeacherConfig(**{**base, **kw})  # type: ignore[arg-type]


def _chat(cfg: TeacherConfig, messages: list[dict], n: int = 1) -> tuple[list, Teacher]:
    async def main() -> tuple[list, Teacher]:
        t = Teacher("t", cfg)
        try:
            return await asyncio.gather(*(t.chat(messages) for _ in range(n)), return_exceptions=True), t
        finally:
            await t.aclose()

    return asyncio.run(main())


def test_retries_429_and_5xx_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-test-123")
    with ScriptedTeacher(lambda ask: f"seen: {ask.text}", failures=[429, 503]) as srv:
        (reply,), teacher = _chat(
            _cfg(srv.url, api_key_env="MY_TEACHER_KEY"), [{"role": "user", "content": "hi there"}]
        )
    assert reply.text == "seen: hi there" and reply.attempts == 3
    assert reply.prompt_tokens == 2 and reply.completion_tokens == 3
    assert teacher.stats.retries == 2 and teacher.stats.status == {"429": 1, "503": 1}
    assert srv.authorization == "Bearer sk-test-123"


def test_gives_up_after_max_retries_as_retryable() -> None:
    with ScriptedTeacher(failures=[500] * 5) as srv:
        (err,), teacher = _chat(_cfg(srv.url, max_retries=2), [{"role": "user", "content": "x"}])
    assert isinstance(err, TeacherError) and err.retryable
    assert "after 3 attempts: HTTP 500: scripted failure 500" in str(err)
    assert sum(srv.attempts.values()) == 3 and teacher.stats.failures == 1


def test_bad_request_is_not_retried() -> None:
    with ScriptedTeacher(failures=[400]) as srv:
        (err,), _ = _chat(_cfg(srv.url), [{"role": "user", "content": "x"}])
    assert isinstance(err, TeacherError) and not err.retryable and "HTTP 400" in str(err)
    assert sum(srv.attempts.values()) == 1


def test_per_request_timeout() -> None:
    with ScriptedTeacher(latency=2.0) as srv:
        (err,), _ = _chat(_cfg(srv.url, timeout=0.3, max_retries=1), [{"role": "user", "content": "x"}])
    assert isinstance(err, TeacherError) and err.retryable and "timed out after 0.3s" in str(err)


def test_concurrency_is_bounded_and_images_are_sent() -> None:
    seen: list[int] = []

    def respond(ask: Ask) -> str:
        seen.append(len(ask.images))
        return "a picture"

    content = [image_part(b"\x89PNG fake bytes"), {"type": "text", "text": "describe"}]
    with ScriptedTeacher(respond, latency=0.05) as srv:
        replies, teacher = _chat(_cfg(srv.url, concurrency=3), [{"role": "user", "content": content}], n=12)
    assert all(r.text == "a picture" for r in replies)
    assert srv.max_in_flight == 3 and seen == [1] * 12
    assert teacher.stats.calls == 12 and teacher.stats.prompt_tokens == 12 * (1 + 64)


def test_reasoning_content_is_returned_separately() -> None:
    with ScriptedTeacher(lambda ask: {"content": "42", "reasoning_content": "six times seven"}) as srv:
        (reply,), _ = _chat(_cfg(srv.url), [{"role": "user", "content": "x"}])
    assert reply.text == "42" and reply.reasoning == "six times seven" and reply.completion_tokens == 4
