"""Teachers: any OpenAI-compatible chat endpoint (OpenAI, vLLM, KServe, `thinkflow serve-model`, …).

`Teacher.chat` sends one chat completion with ``openai.AsyncOpenAI`` under a per-teacher
`asyncio.Semaphore` (bounded concurrency), a per-request timeout, and retries with exponential backoff and
jitter on 408/409/425/429/5xx and connection errors. A ``Retry-After`` (or ``retry-after-ms``) answer
pauses every request of that teacher until then, not only the one that got it: a 429 means the server is
full, and the other workers would only collect 429s of their own. Every reply carries the
server's token usage; `Teacher.stats` sums it. The API key comes from the environment variable named by
``api_key_env`` (mount a Kubernetes Secret as that variable); servers that need no key get ``"EMPTY"``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import math
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import openai
from openai._constants import RAW_RESPONSE_HEADER
from pydantic import BaseModel, ConfigDict, Field, model_validator

from thinkflow.errors import ThinkFlowError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


class TeacherConfig(BaseModel):
    """One OpenAI-compatible endpoint and how to call it."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        default=None,
        description="Endpoint base URL, e.g. http://vllm:8000/v1. Unset: the URL in the `base_url_env` variable.",
    )
    base_url_env: str | None = Field(
        default=None,
        description="Environment variable with the base URL when `base_url` is unset, e.g. "
        "THINKFLOW_REASONER_BASE_URL: the chart publishes one per inference model in the thinkflow-env ConfigMap "
        "(`inference.models[].name` upper-cased, '-' to '_').",
    )
    model: str = Field(description="Model id sent in every request.")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the API key.")
    concurrency: int = Field(default=16, ge=1, description="Requests in flight at most.")
    ramp_up: float = Field(
        default=0.25,
        ge=0,
        description="Seconds over which the first `concurrency` requests are spread: no burst of simultaneous "
        "requests, and replies that keep arriving spread out instead of in waves.",
    )
    timeout: float = Field(default=300.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(default=6, ge=0, description="Retries on 408/409/425/429/5xx and connection errors.")
    backoff: float = Field(
        default=1.0, ge=0, description="First retry delay in seconds (doubles each retry, with jitter)."
    )
    backoff_max: float = Field(default=60.0, ge=0, description="Longest retry delay in seconds.")
    retry_after_max: float = Field(
        default=120.0,
        ge=0,
        description="Longest server-requested pause (Retry-After) honoured, in seconds; longer ones wait this long.",
    )
    temperature: float | None = Field(default=None, ge=0, description="Sampling temperature (default: the server's).")
    max_tokens: int | None = Field(default=4096, ge=1, description="Completion token budget per request.")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="Request field that carries max_tokens (OpenAI's newer models want the other).",
    )
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra request fields (vLLM options, …).")
    max_reply_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest reply body read; a longer one (or a stream that never ends) is cut off and the "
        "record rejected. The whole reply must also arrive within `timeout`.",
    )

    @model_validator(mode="after")
    def _check_url(self) -> TeacherConfig:
        if not self.base_url and not self.base_url_env:
            raise ValueError("set base_url, or base_url_env (the environment variable that holds it)")
        return self

    def url(self) -> str:
        """The endpoint: ``base_url``, else ``$<base_url_env>`` (the chart sets ``THINKFLOW_<NAME>_BASE_URL``)."""
        url = self.base_url or (os.environ.get(self.base_url_env) if self.base_url_env else None)
        if not url:
            raise ValueError(
                f"teacher model {self.model}: base_url is unset and the {self.base_url_env} environment variable "
                "is empty (the chart's thinkflow-env ConfigMap sets it when inference.models has that model; "
                "or set base_url)"
            )
        return url


class BadReply(ValueError):
    """A reply body over `TeacherConfig.max_reply_bytes`, or one that is not JSON: retrying would not help."""


class TeacherError(ThinkFlowError, RuntimeError):
    """A call that failed; ``retryable`` tells whether trying again later may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class Reply:
    """One completion: its text, the separate reasoning some servers return, and token usage."""

    text: str
    reasoning: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    attempts: int
    finish_reason: str | None

    def usage(self) -> dict[str, int]:
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens, "attempts": self.attempts}


@dataclass
class TeacherStats:
    calls: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: dict[str, int] = field(default_factory=dict)


def image_part(data: bytes, fmt: str = "png") -> dict[str, Any]:
    """An ``image_url`` content part carrying the image as a base64 data URL."""
    mime = {"jpg": "jpeg"}.get(fmt.lower(), fmt.lower())
    url = f"data:image/{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _http_client() -> Any:
    """The aiohttp transport that ships with ``openai`` (less CPU per request than httpx), when available."""
    try:
        return openai.DefaultAioHttpClient()
    except RuntimeError:  # aiohttp not installed: the SDK's default httpx client
        return None


def retry_after(headers: Any) -> float | None:
    """Seconds a response asks the client to wait: ``retry-after-ms``, else ``Retry-After`` as seconds or as
    an HTTP date; ``None`` when absent or unreadable. The same reading as the openai SDK's
    ``BaseClient._parse_retry_after_header`` (openai 3.57.0, ``_base_client.py``), which we cannot use as is:
    its retries (``max_retries``) cap every backoff at 8 s and leave nothing for us to count or share."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value) / divisor
        except ValueError:
            continue
        return delay if math.isfinite(delay) else None
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


class Teacher:
    """A rate-limited, retrying client for one endpoint; use inside one event loop."""

    def __init__(self, name: str, cfg: TeacherConfig) -> None:
        self.name = name
        self.cfg = cfg
        self.stats = TeacherStats()
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self._paused_until = 0.0  # event-loop time before which no request is sent (a Retry-After)
        self._client = openai.AsyncOpenAI(
            base_url=cfg.url(),
            api_key=os.environ.get(cfg.api_key_env) or "EMPTY",
            timeout=cfg.timeout,
            max_retries=0,  # retries are ours: counted, with our backoff
            http_client=_http_client(),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def reachable(self, timeout: float = 10.0) -> str | None:
        """``None`` when the endpoint answers ``GET /models`` at all (any HTTP status), else why not."""
        try:
            async with asyncio.timeout(timeout):
                await self._client.get("/models", cast_to=object)
        except openai.APIStatusError:
            return None  # it answered: some servers have no /models
        except (openai.APIConnectionError, TimeoutError) as exc:
            return f"teacher {self.name}: cannot reach {self.cfg.url()} ({exc.__cause__ or exc or 'timed out'})"
        return None

    async def _once(self, body: dict[str, Any]) -> Any:
        # ``post`` with the body built here and the JSON reply returned as is: the typed
        # ``chat.completions.create`` re-walks every message part and builds models per call, which costs
        # more CPU than the rest of a request at hundreds of requests/s.
        # The reply body is read here, chunk by chunk, up to `max_reply_bytes` (the SDK would read it whole);
        # `asyncio.timeout` bounds the whole exchange, so a stream that never ends is cut off either way.
        async with self._sem:
            loop = asyncio.get_running_loop()
            while (wait := self._paused_until - loop.time()) > 0:  # a Retry-After pauses the whole teacher
                await asyncio.sleep(wait)
            async with asyncio.timeout(self.cfg.timeout):
                raw: Any = await self._client.post(
                    "/chat/completions",
                    cast_to=object,
                    body=body,
                    options={"timeout": self.cfg.timeout, "headers": {RAW_RESPONSE_HEADER: "stream"}},
                )
                http = raw.http_response
                try:
                    limit = self.cfg.max_reply_bytes
                    declared = http.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise BadReply(f"reply of {int(declared):,} bytes is over max_reply_bytes={limit:,}")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in http.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise BadReply(f"reply passed max_reply_bytes={limit:,} and was cut off")
                        chunks.append(chunk)
                finally:
                    await http.aclose()
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            raise BadReply(f"reply is not JSON ({size:,} bytes)") from None

    async def chat(self, messages: list[dict[str, Any]], **overrides: Any) -> Reply:
        """One chat completion with retries; raises `TeacherError` when it cannot get one."""
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages}
        if self.cfg.max_tokens is not None:
            body[self.cfg.max_tokens_param] = self.cfg.max_tokens
        if self.cfg.temperature is not None:
            body["temperature"] = self.cfg.temperature
        body.update(self.cfg.extra_body)
        body.update(overrides)
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._once(body)
                break
            except openai.APIStatusError as exc:
                status = exc.status_code
                self.stats.status[str(status)] = self.stats.status.get(str(status), 0) + 1
                retryable = status in RETRYABLE_STATUS or status >= 500
                detail = f"HTTP {status}: {_message(exc)}"
                hint = retry_after(exc.response.headers)
            except BadReply as exc:  # the same request would get the same reply: reject, do not retry
                self.stats.failures += 1
                raise TeacherError(f"teacher {self.name} ({self.cfg.model}): {exc}", retryable=False) from None
            except (openai.APIConnectionError, TimeoutError) as exc:
                retryable, hint = True, None
                timed_out = isinstance(exc, openai.APITimeoutError | TimeoutError)
                detail = f"timed out after {self.cfg.timeout:g}s" if timed_out else f"connection error: {exc}"
            if not retryable or attempt > self.cfg.max_retries:
                self.stats.failures += 1
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise TeacherError(f"teacher {self.name} ({self.cfg.model}){tries}: {detail}", retryable=retryable)
            self.stats.retries += 1
            delay = min(self.cfg.backoff_max, self.cfg.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            if hint is not None and hint > 0:
                pause = min(hint, self.cfg.retry_after_max)
                delay = max(delay, pause)
                loop = asyncio.get_running_loop()
                self._paused_until = max(self._paused_until, loop.time() + pause)  # every request of this teacher
            await asyncio.sleep(delay)
        return self._reply(resp, attempt)

    def _reply(self, resp: Any, attempts: int) -> Reply:
        choices = resp.get("choices") if isinstance(resp, dict) else None
        if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
            self.stats.failures += 1
            raise TeacherError(f"teacher {self.name} ({self.cfg.model}): reply has no choices", retryable=True)
        choice = choices[0]
        msg = choice["message"]
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        usage = resp.get("usage") or {}
        reply = Reply(
            text=msg.get("content") or "",
            reasoning=reasoning if isinstance(reasoning, str) and reasoning.strip() else None,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=str(resp.get("model") or self.cfg.model),
            attempts=attempts,
            finish_reason=choice.get("finish_reason"),
        )
        self.stats.calls += 1
        self.stats.prompt_tokens += reply.prompt_tokens
        self.stats.completion_tokens += reply.completion_tokens
        return reply


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
    return str(exc.message)[:500]
