"""A scripted OpenAI-compatible teacher on loopback, for deterministic build tests and the benchmark.

A test double (``thinkflow.testing.scripted``): no command of the product uses it; the build tests, the
evaluation-judge tests, ``thinkflow preflight``'s tests and ``bench/build.py`` serve it in place of a real model
server (``python -m thinkflow.testing.scripted --port P``).

`ScriptedTeacher` runs a real HTTP server (aiohttp, in a background thread) that answers
``POST /v1/chat/completions`` with whatever a Python function returns for the request, after an optional
fixed latency. It counts, per request (model + messages), how many times a reply was *served*, so a test can
check on the server side that no finished teacher call was ever repeated. It can also fail the first
attempts of every request with given HTTP statuses (to exercise retries), and hold requests after the
N-th reply of a model (they never finish until released), so a test can kill a build at a known point.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ask:
    """One request as the responder sees it."""

    model: str
    text: str
    images: list[bytes]
    body: dict[str, Any]
    key: str


# A reply: the message content, or a dict of message fields (e.g. {"content": …, "reasoning_content": …}).
Responder = Callable[[Ask], Any]


def request_key(body: dict[str, Any]) -> str:
    """Identity of a request: its model and messages."""
    data = json.dumps({"model": body.get("model"), "messages": body.get("messages")}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def _ask(body: dict[str, Any]) -> Ask:
    texts: list[str] = []
    images: list[bytes] = []
    for msg in body.get("messages") or []:
        content = msg.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                images.append(base64.b64decode(url.split(",", 1)[1]))
    return Ask(str(body.get("model")), "\n".join(texts), images, body, request_key(body))


def echo_responder(ask: Ask) -> str:
    """Default reply: a short fixed text."""
    return "ok"


@dataclass
class ScriptedTeacher:
    """Loopback OpenAI-compatible server driven by ``respond``; use as a context manager."""

    respond: Responder = echo_responder
    latency: float = 0.0
    failures: list[int] = field(default_factory=list)
    retry_after: str = "0"  # the Retry-After header of the scripted failures
    hold_after: dict[str, int] = field(default_factory=dict)
    port: int = 0
    served: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    served_per_model: Counter[str] = field(default_factory=Counter)
    held: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    authorization: str | None = None
    errors: list[str] = field(default_factory=list)
    arrivals: list[tuple[float, str, int]] = field(default_factory=list)  # (monotonic time, request key, attempt)

    def __post_init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: Any) -> Any:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.authorization = request.headers.get("authorization")
        try:
            return await self._answer(await request.json())
        finally:
            self.in_flight -= 1

    async def _answer(self, body: dict[str, Any]) -> Any:
        from aiohttp.web import json_response

        ask = _ask(body)
        self.attempts[ask.key] += 1
        n = self.attempts[ask.key]
        self.arrivals.append((time.monotonic(), ask.key, n))
        if n <= len(self.failures):
            status = self.failures[n - 1]
            return json_response(
                {"error": {"message": f"scripted failure {status}", "type": "scripted"}},
                status=status,
                headers={"retry-after": self.retry_after},
            )
        limit = self.hold_after.get(ask.model)
        if limit is not None and self.served_per_model[ask.model] >= limit:
            self.held += 1
            assert self._release is not None
            await self._release.wait()
            return json_response({"error": {"message": "released", "type": "scripted"}}, status=503)
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            content = self.respond(ask)
        except Exception as exc:  # a responder bug: report it to the test as a 500
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return json_response({"error": {"message": str(exc), "type": "responder"}}, status=500)
        message = (
            {"role": "assistant", **content} if isinstance(content, dict) else {"role": "assistant", "content": content}
        )
        prompt_tokens = len(ask.text.split()) + 64 * len(ask.images)
        completion_tokens = sum(len(str(v).split()) for k, v in message.items() if k != "role")
        self.served[ask.key] += 1
        self.served_per_model[ask.model] += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        return json_response(
            {
                "id": f"chatcmpl-{ask.key[:24]}-{self.served[ask.key]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": ask.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def _app(self) -> Any:
        from aiohttp import web

        async def models(request: Any) -> Any:
            return web.json_response({"object": "list", "data": []})

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", models)
        return app

    def start(self) -> ScriptedTeacher:
        from aiohttp import web

        from thinkflow.testing import free_port

        self.port = self.port or free_port()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._release = asyncio.Event()
            self._stop = asyncio.Event()
            runner = web.AppRunner(self._app(), access_log=None)

            async def serve() -> None:
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=4096)
                await site.start()
                ready.set()
                assert self._stop is not None
                await self._stop.wait()
                await runner.cleanup()

            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="scripted-teacher", daemon=True)
        self._thread.start()
        if not ready.wait(30) or failure:
            raise RuntimeError(f"scripted teacher did not start: {failure[0] if failure else 'timeout'}")
        return self

    def release(self) -> None:
        """Let held requests finish (with HTTP 503; they are not counted as served)."""
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def stop(self) -> None:
        self.release()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ScriptedTeacher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SyntheticOracle:
    """Scripted teachers that know the answers of the synthetic scenes: a six-step build with no model.

    Dispatches on the request's model name: ``captioner`` (describes the scene, tagged with its id),
    ``reasoner`` (R1-style ``<think>…</think>`` + ``Answer: …``), ``rewriter`` (points "the caption" at "the
    image") and ``judge`` (Yes/No against the correct answer). Deterministic variations by scene index
    exercise every branch of the build: wrong answers (``i % 7 == 3``, rejected at verify), missing
    ``<think>`` (``i % 11 == 5``, rejected at reason), caption mentions (``i % 6 == 2``, rewritten; and
    ``i % 12 == 2`` rewritten with 20 extra words, dropped) and aha cues (``i % 4 == 1``, split ``rl``).
    """

    MODELS = ("captioner", "reasoner", "rewriter", "judge")

    def __init__(self, n: int, seed: int = 0) -> None:
        from thinkflow.data.scenes import iter_scenes

        self.scenes = list(iter_scenes(n, seed))
        self.by_image = {hashlib.sha256(s.png()).hexdigest(): s for s in self.scenes}
        self.by_tag = {self.tag(s): s for s in self.scenes}
        self.reasoning_of: dict[str, Any] = {}

    @staticmethod
    def tag(scene: Any) -> str:
        return hashlib.sha256(scene.id.encode()).hexdigest()[:12]

    def __call__(self, ask: Ask) -> str:
        handler = {
            "captioner": self.caption,
            "reasoner": self.reason,
            "rewriter": self.rewrite,
            "judge": self.judge,
        }.get(ask.model)
        if handler is None:
            raise ValueError(f"unknown scripted model {ask.model!r}")
        return handler(ask)

    def caption(self, ask: Ask) -> str:
        if not ask.images:
            raise ValueError("caption request without an image")
        scene = self.by_image[hashlib.sha256(ask.images[0]).hexdigest()]
        shapes = ", ".join(f"a {s.colour} {s.kind}" for s in scene.shapes) or "a labelled figure"
        return f"Scene {self.tag(scene)}. A {scene.width}x{scene.height} picture showing {shapes}."

    @staticmethod
    def wrong(scene: Any) -> str:
        sol = scene.solution
        if scene.verifier_type == "mcq":
            return "ABCD"[("ABCD".index(sol) + 1) % 4]
        if scene.verifier_type == "iou":
            box = json.loads(sol)
            return json.dumps([round(min(1.0, v + 0.4), 3) if i % 2 == 0 else v for i, v in enumerate(box)])
        if scene.verifier_type == "open":
            return "An empty page."
        return str(int(float(sol)) + 1)

    def reason(self, ask: Ask) -> str:
        import re

        m = re.search(r"Scene ([0-9a-f]{12})", ask.text)
        if not m:
            raise ValueError("reasoning request without a scene tag")
        scene = self.by_tag[m.group(1)]
        i = scene.index
        answer = self.wrong(scene) if i % 7 == 3 else scene.solution
        think = scene.reasoning
        if i % 6 == 2:
            think = "The caption says what the image holds. " + think
        if i % 4 == 1:
            think += " Wait, let me check again: the result holds."
        self.reasoning_of[think.strip()] = scene
        if i % 11 == 5:
            return f"{think}\nAnswer: {answer}"
        return f"<think>\n{think}\n</think>\n\nSo the result follows.\n\n**Answer:** {answer}"

    def rewrite(self, ask: Ask) -> str:
        reasoning = ask.text.split("Reasoning:", 1)[1].strip()
        scene = self.reasoning_of.get(reasoning)
        new = reasoning.replace("The caption says what the image holds.", "The image shows what it holds.")
        if scene is not None and scene.index % 12 == 2:
            new += " " + " ".join(["padding"] * 20)
        return new

    def judge(self, ask: Ask) -> str:
        import re

        m = re.search(r"Correct answer:\s*(.*?)\s*Answer to grade:\s*(.*?)\s*Does the answer", ask.text, re.DOTALL)
        if not m:
            raise ValueError("judge request without the answers")

        def norm(x: str) -> str:
            return " ".join(x.lower().strip().rstrip(".").split())

        return "Yes" if norm(m.group(1)) == norm(m.group(2)) else "No"


def main(argv: list[str] | None = None) -> None:
    """``python -m thinkflow.testing.scripted --port P [--latency S] [--oracle N]``: serve until killed."""
    import argparse

    ap = argparse.ArgumentParser(description="Scripted OpenAI-compatible teacher on 127.0.0.1.")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    ap.add_argument("--oracle", type=int, default=0, help="answer as SyntheticOracle over N synthetic scenes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    respond: Responder = SyntheticOracle(args.oracle, args.seed) if args.oracle else echo_responder
    with ScriptedTeacher(respond, latency=args.latency, port=args.port):
        print(f"scripted teacher on http://127.0.0.1:{args.port}/v1", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
