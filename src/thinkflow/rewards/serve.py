"""``thinkflow serve-reward``: one open-ended reward model behind the scorer protocol of `rewards.open_ended`.

``POST /score`` ``{"image": ..., "question": "...", "answers": [...]}`` → ``{"scores": [...]}`` (one request
is one batch: the answers of a GRPO group, plus the reference); ``GET /health`` → ``{"status": "ok"}``
(no token needed, for probes). With an API key (``--api-key-env NAME``: the key is read from that
environment variable, e.g. mounted from a Kubernetes Secret) every ``POST`` needs
``Authorization: Bearer <key>`` (401 otherwise). Requests are scored one at a time on one worker thread (the
model is not shared between threads); at most ``max_queue`` requests wait, more get 503 (the client
retries). Bad input gets 400 with ``{"error": ...}`` naming the field, bodies over ``max_body_bytes`` 413.

Kinds (``--kind``):

- ``ixc2.5-reward``: InternLM-XComposer2.5-Reward, the paper's reward model, loaded with
  ``AutoModel.from_pretrained(..., trust_remote_code=True)`` and scored with its documented
  ``model.get_scores(chats, images, hd_num=...)`` (model card of ``internlm/internlm-xcomposer2d5-7b-reward``,
  README at commit 65ae685: a chat is ``[{"role": "user", ...}, {"role": "assistant", ...}]``, images are
  lists of file paths, ``model.tokenizer`` must be set). Here it is tested with a tiny remote-code module
  exposing the same API; the real weights run only on a GPU machine.
- ``sequence-classification``: any ``AutoModelForSequenceClassification`` checkpoint with one label (a
  scalar head) and a processor (a VLM reward model: Gemma 3, Qwen3.5, or Qwen2(.5)-VL through
  `thinkflow.models.sequence_classification`) or a tokenizer (text-only: the image is ignored).
- ``logprob``: `LogProbScorer`, the mean log-probability of the answer under a VLM (a stand-in).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from thinkflow import env
from thinkflow.rewards.open_ended import LogProbScorer, Scorer, load_image

Kind = Literal["ixc2.5-reward", "sequence-classification", "logprob"]
KINDS: tuple[str, ...] = ("ixc2.5-reward", "sequence-classification", "logprob")
DEFAULT_API_KEY_ENV = env.REWARD_API_KEY


class ServeError(RuntimeError):
    """The reward server cannot start (bad model, missing key); the message names what to fix."""


class ScoreRequest(BaseModel):
    """The protocol's request body (see `thinkflow.rewards.open_ended`)."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = None
    question: str
    answers: list[str] = Field(max_length=1024)


# ------------------------------------------------------------------------------------------------ scorers


class IXCRewardScorer:
    """InternLM-XComposer2.5-Reward through its remote-code ``get_scores`` API (see the module docstring)."""

    def __init__(self, model: Any, *, hd_num: int = 9, batch_size: int = 8) -> None:
        for name in ("get_scores", "tokenizer"):
            if not hasattr(model, name):
                raise ServeError(f"ixc2.5-reward: the model has no {name!r}; is it an IXC-2.5-Reward checkpoint?")
        self.model = model
        self.hd_num = hd_num
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | None = None, **kwargs: Any) -> IXCRewardScorer:
        import torch
        from transformers import AutoModel, AutoTokenizer

        cuda = torch.cuda.is_available()
        model = AutoModel.from_pretrained(
            str(path), trust_remote_code=True, dtype=torch.float16 if cuda else torch.float32
        )
        model = model.to(device or ("cuda" if cuda else "cpu")).eval()
        model.tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)
        return cls(model, **kwargs)

    def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]:
        import torch

        if not answers:
            return []
        with tempfile.TemporaryDirectory(prefix="thinkflow-ixc-") as tmp:
            images: list[str] = []
            pil = load_image(image)
            if pil is not None:  # the API takes image file paths
                path = Path(tmp) / "image.png"
                pil.convert("RGB").save(path)
                images = [str(path)]
            scores: list[float] = []
            with torch.inference_mode():
                for start in range(0, len(answers), self.batch_size):
                    chunk = answers[start : start + self.batch_size]
                    chats = [
                        [{"role": "user", "content": question}, {"role": "assistant", "content": a}] for a in chunk
                    ]
                    out = self.model.get_scores(chats, [images] * len(chunk), hd_num=self.hd_num)
                    scores.extend(float(s) for s in out)
        return scores


class SequenceClassificationScorer:
    """A reward model with a scalar head: the single logit for (image, question, answer) as a chat."""

    def __init__(self, model: Any, processor: Any, *, batch_size: int = 8) -> None:
        if getattr(model.config, "num_labels", 1) != 1:
            raise ServeError(
                f"sequence-classification: expected 1 label (a scalar head), got {model.config.num_labels}"
            )
        self.model = model
        self.processor = processor
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | None = None, **kwargs: Any
    ) -> SequenceClassificationScorer:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoProcessor

        from thinkflow.models.processor import register_processors
        from thinkflow.models.sequence_classification import register

        register()  # Qwen2-VL / Qwen2.5-VL with a scalar head
        register_processors()
        try:
            model = AutoModelForSequenceClassification.from_pretrained(str(path))
        except ValueError as exc:  # no sequence-classification class for this architecture
            raise ServeError(f"sequence-classification: cannot load {path}: {exc}") from None
        processor = AutoProcessor.from_pretrained(str(path))
        model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        return cls(model, processor, **kwargs)

    def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]:
        import torch

        if not answers:
            return []
        pil = load_image(image)
        has_images = hasattr(self.processor, "image_processor") and pil is not None
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(answers), self.batch_size):
                chunk = answers[start : start + self.batch_size]
                texts = []
                for a in chunk:
                    user: list[dict[str, Any]] = [{"type": "text", "text": question}]
                    if has_images:
                        user.insert(0, {"type": "image"})
                    chat = [
                        {"role": "user", "content": user if has_images else question},
                        {"role": "assistant", "content": [{"type": "text", "text": a}] if has_images else a},
                    ]
                    texts.append(self.processor.apply_chat_template(chat, tokenize=False))
                if has_images:
                    inputs = self.processor(
                        text=texts, images=[pil.convert("RGB")] * len(chunk), return_tensors="pt", padding=True
                    )
                else:
                    inputs = tokenizer(texts, return_tensors="pt", padding=True)
                inputs = {k: v.to(self.model.device) for k, v in dict(inputs).items()}
                logits = self.model(**inputs).logits.float()
                scores.extend(float(x) for x in logits[:, 0])
        return scores


def load_scorer(model: str, kind: str, *, batch_size: int = 8, device: str | None = None) -> Scorer:
    """The reward model at ``model`` (a directory or ``s3://`` URI) as a scorer of the given kind."""
    from thinkflow import storage

    if kind not in KINDS:
        raise ServeError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    try:
        path = storage.localize(model)
    except storage.StorageError as exc:
        raise ServeError(f"model {model}: {exc}") from None
    if not (Path(path) / "config.json").is_file():
        raise ServeError(f"model {model}: not a model directory (no config.json in {path})")
    if kind == "ixc2.5-reward":
        return IXCRewardScorer.from_pretrained(path, device=device, batch_size=batch_size)
    if kind == "sequence-classification":
        return SequenceClassificationScorer.from_pretrained(path, device=device, batch_size=batch_size)
    return LogProbScorer.from_pretrained(path, device=device, batch_size=batch_size)


# ------------------------------------------------------------------------------------------------ server


def create_app(
    scorer: Scorer,
    *,
    api_key: str | None = None,
    max_queue: int = 64,
    max_body_bytes: int = 16 * 1024 * 1024,
    max_answers: int = 256,
) -> FastAPI:
    """The FastAPI app serving ``scorer`` (see the module docstring for the contract)."""
    app = FastAPI(title="thinkflow reward model")
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thinkflow-reward")
    pending = 0
    lock = threading.Lock()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/score")
    async def score(request: Request) -> JSONResponse:
        nonlocal pending
        if api_key is not None:
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
                return error(401, "missing or wrong bearer token (Authorization: Bearer <key>)")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return error(413, f"request body of {declared} bytes is over the limit of {max_body_bytes}")
        body = bytearray()
        async for part in request.stream():
            body.extend(part)
            if len(body) > max_body_bytes:
                return error(413, f"request body is over the limit of {max_body_bytes} bytes")
        try:
            req = ScoreRequest.model_validate_json(bytes(body))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            return error(400, f"bad request: field {field!r}: {first['msg']}")
        if len(req.answers) > max_answers:
            return error(400, f"bad request: field 'answers': {len(req.answers)} answers, at most {max_answers}")
        try:
            image = await asyncio.to_thread(load_image, req.image) if req.image is not None else None
        except Exception as exc:  # undecodable data URI, unreachable URL, missing object
            return error(400, f"bad request: field 'image': cannot read the image: {exc}")
        with lock:
            if pending >= max_queue:
                return error(503, f"busy: {pending} requests queued (max_queue {max_queue}); retry later")
            pending += 1
        try:
            loop = asyncio.get_running_loop()
            scores = await loop.run_in_executor(worker, scorer.score, image, req.question, req.answers)
        except Exception as exc:
            return error(500, f"{type(exc).__name__}: {exc}")
        finally:
            with lock:
                pending -= 1
        return JSONResponse({"scores": [float(s) for s in scores]})

    app.router.on_shutdown.append(lambda: worker.shutdown(wait=False))
    return app


def api_key_from_env(name: str | None) -> str | None:
    """The bearer token from the environment variable ``name`` (None: no token); an empty value is an error."""
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.strip():
        raise ServeError(f"--api-key-env {name}: the variable is set but empty")
    return value.strip()


def serve(
    model: str,
    kind: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: str | None = DEFAULT_API_KEY_ENV,
    batch_size: int = 8,
    max_queue: int = 64,
    max_body_bytes: int = 16 * 1024 * 1024,
) -> None:
    """Load the reward model and serve it until interrupted (``thinkflow serve-reward``)."""
    import uvicorn

    api_key = api_key_from_env(api_key_env)
    scorer = load_scorer(model, kind, batch_size=batch_size)
    app = create_app(scorer, api_key=api_key, max_queue=max_queue, max_body_bytes=max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level="info")
