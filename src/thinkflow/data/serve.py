"""An OpenAI-compatible chat server for a local VLM checkpoint, built on transformers.

``thinkflow serve-model MODEL_DIR --port 8000`` serves ``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /health`` and ``GET /stats``. Unlike ``transformers serve`` (which drops image parts), image parts
(``{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}``) go through the model's processor,
so the image tokens reach the model and ``usage.prompt_tokens`` counts them. Used as the teacher endpoint in
tests and demos (with the tiny model) and as a small reward-model / judge endpoint; on a cluster, point the
same configs at vLLM or KServe instead.

Generation follows the OpenAI request: ``max_tokens`` / ``max_completion_tokens``, ``temperature`` (0 =
greedy; default 1.0), ``top_p``, ``seed``, ``stop``. One request is generated at a time (a lock); requests
wait their turn. Only ``data:`` image URLs are accepted (the server fetches nothing).

Given ``--version-file`` (the ``served.json`` that ``thinkflow serve-init`` writes), it reports the registry
version it serves: the model id is ``NAME-vVERSION`` (in ``/v1/models`` and in every response's ``model``
field, as vLLM does with its first ``--served-model-name``), ``/v1/models`` carries the registry metadata under
``thinkflow``, and every response has the header ``X-ThinkFlow-Model-Version``. This is the stand-in for the
vLLM serving Deployment in tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DEFAULT_MAX_TOKENS = 256
VERSION_HEADER = "X-ThinkFlow-Model-Version"


class RequestError(ValueError):
    """A request the server cannot serve (HTTP 400); the message names the field."""


def decode_data_url(url: str, where: str) -> Any:
    """A PIL image from a ``data:image/…;base64,…`` URL."""
    from PIL import Image, UnidentifiedImageError

    if not url.startswith("data:"):
        raise RequestError(f"{where}: only data: URLs are supported (got {url[:40]!r}…)")
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise RequestError(f"{where}: expected a base64 data URL")
    try:
        raw = base64.b64decode(payload, validate=False)
        with Image.open(io.BytesIO(raw)) as im:
            return im.convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as exc:
        raise RequestError(f"{where}: cannot decode the image: {exc}") from None


def parse_messages(messages: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """OpenAI chat messages -> (processor conversation with ``{"type": "image"}`` parts, PIL images)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: expected a non-empty list")
    conversation: list[dict[str, Any]] = []
    images: list[Any] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant"):
            raise RequestError(f"messages[{i}]: expected an object with role system, user or assistant")
        content = msg.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        elif isinstance(content, list):
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in ("text", "input_text"):
                    parts.append({"type": "text", "text": str(part.get("text", ""))})
                elif kind in ("image_url", "image", "input_image"):
                    ref = part.get("image_url", part.get("image"))
                    url = ref.get("url") if isinstance(ref, dict) else ref
                    if not isinstance(url, str):
                        raise RequestError(f"{where}: image part without a url")
                    images.append(decode_data_url(url, where))
                    parts.append({"type": "image"})
                else:
                    raise RequestError(f"{where}: unsupported content part type {kind!r}")
        elif content is not None:
            raise RequestError(f"messages[{i}].content: expected a string or a list of parts")
        conversation.append({"role": msg["role"], "content": parts})
    return conversation, images


class ModelServer:
    """A loaded model + processor answering chat-completion requests (thread-safe, one at a time)."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        max_tokens_cap: int = 8192,
        served: dict[str, Any] | None = None,
    ) -> None:
        from thinkflow.models.load import load

        self.model, self.processor = load(model_dir, dtype=dtype, device=device)
        self.served = served  # the registry version (served.json of serve-init), or None
        self.name = (served or {}).get("served_model_name") or name or Path(str(model_dir).rstrip("/")).name
        self.default_max_tokens = default_max_tokens
        self.max_tokens_cap = max_tokens_cap
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "images": 0}
        eos = self.model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat completion for an OpenAI request body."""
        import torch

        if body.get("stream"):
            raise RequestError("stream: streaming is not supported by this server")
        if int(body.get("n") or 1) != 1:
            raise RequestError("n: only n=1 is supported")
        if body.get("tools"):
            raise RequestError("tools: tool calls are not supported")
        conversation, images = parse_messages(body.get("messages"))
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or self.default_max_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError("max_tokens: expected a positive integer")
        max_tokens = min(max_tokens, self.max_tokens_cap)
        temperature = float(body["temperature"]) if body.get("temperature") is not None else 1.0
        top_p = float(body["top_p"]) if body.get("top_p") is not None else 1.0
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str) and s]
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt").to(self.model.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        gen: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": temperature > 0}
        if temperature > 0:
            gen.update(temperature=temperature, top_p=top_p)
        with self._lock, torch.inference_mode():
            if body.get("seed") is not None:
                torch.manual_seed(int(body["seed"]))
            out = self.model.generate(**inputs, **gen, pad_token_id=self.processor.tokenizer.pad_token_id)
        new = out[0, prompt_tokens:].tolist()
        finish = "length"
        for k, tok in enumerate(new):
            if tok in self._eos:
                new, finish = new[: k + 1], "stop"
                break
        completion = self.processor.tokenizer.decode(new, skip_special_tokens=True)
        for s in stops:
            cut = completion.find(s)
            if cut >= 0:
                completion, finish = completion[:cut], "stop"
        self.stats["requests"] += 1
        self.stats["images"] += len(images)
        self.stats["prompt_tokens"] += prompt_tokens
        self.stats["completion_tokens"] += len(new)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(new),
                "total_tokens": prompt_tokens + len(new),
            },
        }


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "param": None, "code": None}}
    )


def create_app(server: ModelServer) -> FastAPI:
    """The FastAPI app serving ``server``."""
    app = FastAPI(title=f"thinkflow serve-model: {server.name}")
    if server.served is not None:
        version = str(server.served["version"])

        @app.middleware("http")
        async def version_header(request: Request, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers[VERSION_HEADER] = version
            return response

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": server.name}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return dict(server.stats)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry: dict[str, Any] = {"id": server.name, "object": "model", "owned_by": "thinkflow"}
        if server.served is not None:
            entry["thinkflow"] = server.served
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        try:
            return await asyncio.to_thread(server.complete, body)
        except RequestError as exc:
            server.stats["errors"] += 1
            return _error(400, str(exc))

    return app


def serve(
    model_dir: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    served: dict[str, Any] | None = None,
) -> None:
    """Load the model and serve it until interrupted (reporting the registry version ``served``, the content of
    the ``served.json`` that `thinkflow.serving.resolve.read_served` reads)."""
    import uvicorn

    server = ModelServer(
        model_dir, name=name, device=device, dtype=dtype, default_max_tokens=default_max_tokens, served=served
    )
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning")
