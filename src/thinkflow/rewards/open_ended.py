"""``open``: a reward model S scores free-form answers against the reference answer.

R = 1 − exp(−β·(S(ŷ) − S(y))) if S(ŷ) > S(y) else 0, with ŷ the extracted answer and y the reference
(the record's ``solution``); β is ``RewardConfig.beta``. S(y) is computed once per sample and cached;
the answers of one sample (a GRPO group) are scored in one batched call.

Scorers are pluggable (anything with ``score(image, question, answers) -> list[float]``):

- ``HTTPScorer``: a served reward model speaking the protocol below (vLLM/KServe wrappers, or
  `thinkflow.rewards.serve.ScorerServer` around any in-process scorer);
- ``LogProbScorer``: an in-process Hugging Face VLM; S = mean log-probability of the answer's tokens given
  the image and the question (a generative reward model; the tiny model in tests);
- your own object, e.g. one calling an InternLM-XComposer2.5-Reward style ``model.get_score(chat, image)``,
  passed to ``MixedReward(config, scorer=...)``.

HTTP protocol (JSON, UTF-8):

``POST {url}`` with ``{"image": IMAGE, "question": "...", "answers": ["...", ...]}`` answers
``200 {"scores": [float, ...]}`` (one score per answer, same order). ``IMAGE`` is ``null``, an ``http(s)://``
or ``s3://`` URI the server can read, or a ``data:image/...;base64,...`` URI (local files and in-memory
images are sent this way). Errors answer 4xx/5xx with ``{"error": "..."}``. ``GET {url}/health`` answers
``{"status": "ok"}``. A server may require ``Authorization: Bearer <key>`` (``HTTPScorer(api_key=...)``).
``thinkflow serve-reward`` (`thinkflow.rewards.serve`) is the server of this protocol; its `ScorerServer` runs
the same app in a thread around any in-process scorer.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import threading
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
from cachetools import LRUCache

from thinkflow.errors import ThinkFlowError

DATA_URI_PREFIX = "data:"
# Client-side bounds of the HTTP protocol: a request carries one image (base64) and a GRPO group of answers;
# a reply carries one float per answer.
MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_RESPONSE_BYTES = 1024 * 1024
# Extracted answers longer than this score 0 without being sent to the reward model.
MAX_ANSWER_CHARS = 32_768


class ScorerError(ThinkFlowError, RuntimeError):
    """The reward model could not score (server down, bad reply): an infrastructure error, not an input."""


@runtime_checkable
class Scorer(Protocol):
    """A reward model: one score per answer to ``question`` about ``image`` (higher is better)."""

    def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]: ...


def open_reward(s_pred: float, s_ref: float, beta: float) -> float:
    """R = 1 − exp(−β·(S(ŷ) − S(y))) when S(ŷ) > S(y), else 0 (also 0 for NaN/inf scores)."""
    try:
        s_pred, s_ref = float(s_pred), float(s_ref)
    except (TypeError, ValueError):
        return 0.0
    if not (math.isfinite(s_pred) and math.isfinite(s_ref)) or s_pred <= s_ref:
        return 0.0
    return 1.0 - math.exp(-beta * (s_pred - s_ref))


# ---------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------


def _is_uri(text: str) -> bool:
    return text.startswith(("http://", "https://", "s3://", DATA_URI_PREFIX))


def load_image(image: Any, image_root: str | Path | None = None) -> Any:
    """A PIL image from a PIL image, a path (inside ``image_root`` when given), a data URI, ``http(s)://`` or
    ``s3://``; read and decoded through `thinkflow.images` (byte and pixel limits, readable errors)."""
    from PIL import Image

    from thinkflow import images

    if image is None or isinstance(image, Image.Image):
        return image
    if isinstance(image, dict):  # datasets' undecoded Image feature
        if image.get("bytes"):
            return images.decode(bytes(image["bytes"]), what=f"image {image.get('path') or '<bytes>'}")
        image = image.get("path")
    if isinstance(image, bytes):
        return images.decode(image, what="image <bytes>")
    if not isinstance(image, str):
        raise ValueError(f"unsupported image value of type {type(image).__name__}")
    if image.startswith(DATA_URI_PREFIX):
        _, _, payload = image.partition(",")
        return images.decode(base64.b64decode(payload), what="image <data URI>")
    if image.startswith(("http://", "https://")):
        limit = images.DEFAULT_LIMITS.max_bytes
        with httpx.stream("GET", image, timeout=30.0, follow_redirects=True) as reply:
            reply.raise_for_status()
            data = _read_capped(reply, limit, f"image {image}")
        return images.decode(data, what=f"image {image}")
    if image.startswith("s3://"):
        from thinkflow import storage

        return images.decode(images.read_file(storage.localize(image), what=image), what=f"image {image}")
    path = images.resolve(image, image_root) if image_root is not None else Path(image)
    return images.decode(images.read_file(path, what=repr(image)), what=f"image {image!r}")


def _read_capped(reply: httpx.Response, limit: int, what: str) -> bytes:
    """The body of a streamed reply, refused (`ScorerError`) past ``limit`` bytes without reading further."""
    declared = reply.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ScorerError(f"{what}: reply of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    chunks, size = [], 0
    for chunk in reply.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ScorerError(f"{what}: reply is over the limit of {limit:,} bytes (cut off)")
        chunks.append(chunk)
    return b"".join(chunks)


def image_payload(image: Any, image_root: str | Path | None = None) -> str | None:
    """The protocol's ``image`` field: URIs as is, local files and in-memory images as a PNG data URI."""
    if image is None:
        return None
    if isinstance(image, str) and _is_uri(image):
        return image
    pil = load_image(image, image_root)
    buffer = io.BytesIO()
    pil.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_key(image: Any) -> Hashable:
    """A cache key for an image: its URI/path, or a digest of its pixels or bytes."""
    if image is None or isinstance(image, str):
        return image
    if isinstance(image, bytes):
        return hashlib.blake2b(image, digest_size=16).hexdigest()
    if isinstance(image, dict):
        return image_key(image.get("bytes") or image.get("path"))
    tobytes = getattr(image, "tobytes", None)
    if callable(tobytes):
        digest = hashlib.blake2b(tobytes(), digest_size=16)
        digest.update(repr((getattr(image, "size", None), getattr(image, "mode", None))).encode())
        return digest.hexdigest()
    return id(image)


# ---------------------------------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------------------------------


class HTTPScorer:
    """A reward model behind the HTTP protocol in the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 60.0,
        retries: int = 2,
        image_root: str | Path | None = None,
        client: httpx.Client | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        api_key: str | None = None,
    ) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self.retries = retries
        self.image_root = image_root
        self.client = client or httpx.Client(timeout=timeout_s)
        self.max_request_bytes = max_request_bytes
        self.max_response_bytes = max_response_bytes

    def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]:
        if not answers:
            return []
        body = {"image": image_payload(image, self.image_root), "question": question, "answers": list(answers)}
        content = json.dumps(body).encode()
        if len(content) > self.max_request_bytes:
            raise ScorerError(
                f"{self.url}: request of {len(content):,} bytes is over the limit of {self.max_request_bytes:,} "
                "(image + question + answers)"
            )
        headers = {"Content-Type": "application/json", **self.headers}
        error: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                with self.client.stream(
                    "POST", self.url, content=content, headers=headers, timeout=self.timeout_s
                ) as reply:
                    data = _read_capped(reply, self.max_response_bytes, f"reward model at {self.url}")
            except httpx.HTTPError as exc:
                error = exc
            else:
                if reply.status_code < 500:
                    return self._scores(reply.status_code, data, len(answers))
                error = ScorerError(f"{self.url}: HTTP {reply.status_code}: {data[:200].decode(errors='replace')}")
            time.sleep(min(0.5 * 2**attempt, 4.0))
        raise ScorerError(f"reward model at {self.url} failed after {self.retries + 1} attempts: {error}")

    def _scores(self, status: int, data: bytes, n: int) -> list[float]:
        try:
            payload = json.loads(data)
        except ValueError:
            raise ScorerError(f"{self.url}: reply is not JSON: {data[:200]!r}") from None
        if status != 200:
            error = payload.get("error", payload) if isinstance(payload, dict) else payload
            raise ScorerError(f"{self.url}: HTTP {status}: {str(error)[:500]}")
        scores = payload.get("scores") if isinstance(payload, dict) else None
        if not isinstance(scores, list) or len(scores) != n:
            raise ScorerError(f"{self.url}: expected {{'scores': [{n} numbers]}}, got {str(payload)[:200]}")
        try:
            return [float(s) for s in scores]
        except (TypeError, ValueError):
            raise ScorerError(f"{self.url}: scores must be numbers, got {scores[:5]}") from None


class LogProbScorer:
    """An in-process VLM as reward model: S = mean log-probability of the answer given image and question.

    ``model``/``processor`` as returned by ``thinkflow.models.load.load``; or use ``from_pretrained(uri)``.
    Answers are truncated to ``max_answer_tokens``; ``batch_size`` answers go through the model at once.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 8,
        max_answer_tokens: int = 256,
        image_root: str | Path | None = None,
    ) -> None:
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.max_answer_tokens = max_answer_tokens
        self.image_root = image_root
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, model_uri: str | Path, *, device: str | None = None, **kwargs: Any) -> LogProbScorer:
        from thinkflow.models.load import load

        model, processor = load(model_uri, device=device)
        return cls(model, processor, **kwargs)

    def _prompt(self, image: Any, question: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": question}]
        if image is not None:
            content.insert(0, {"type": "image"})
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        images = [image.convert("RGB")] if image is not None else None
        return dict(self.processor(text=[text], images=images, return_tensors="pt"))

    def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]:
        import torch

        if not answers:
            return []
        pil = load_image(image, self.image_root)
        tokenizer = self.processor.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        with self._lock, torch.inference_mode():
            prompt = self._prompt(pil, question)
            prompt_ids = prompt["input_ids"][0].tolist()
            scores: list[float] = []
            for start in range(0, len(answers), self.batch_size):
                chunk = answers[start : start + self.batch_size]
                answer_ids = [
                    tokenizer(a, add_special_tokens=False)["input_ids"][: self.max_answer_tokens] or [pad_id]
                    for a in chunk
                ]
                width = len(prompt_ids) + max(len(a) for a in answer_ids)
                ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, a in enumerate(answer_ids):
                    seq = prompt_ids + a
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
                if "pixel_values" in prompt:
                    inputs["pixel_values"] = prompt["pixel_values"].repeat(len(chunk), 1)
                    inputs["image_grid_thw"] = prompt["image_grid_thw"].repeat(len(chunk), 1)
                device = self.model.device
                inputs = {k: v.to(device) for k, v in inputs.items()}
                logits = self.model(**inputs).logits.float()
                logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
                token_lp = logprobs.gather(-1, inputs["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
                for row, a in enumerate(answer_ids):
                    first = len(prompt_ids) - 1  # logits at position t predict token t+1
                    scores.append(float(token_lp[row, first : first + len(a)].mean()))
            return scores


# ---------------------------------------------------------------------------------------------------
# The reward
# ---------------------------------------------------------------------------------------------------


class OpenEndedReward:
    """Rewards for open-ended answers with a scorer, S(y) cached per sample, one call per sample."""

    def __init__(
        self, scorer: Scorer, beta: float = 1.0, cache_size: int = 100_000, max_answer_chars: int = MAX_ANSWER_CHARS
    ) -> None:
        self.scorer = scorer
        self.beta = beta
        self.max_answer_chars = max_answer_chars
        self._reference: LRUCache[Hashable, float] = LRUCache(maxsize=cache_size)

    def rewards(
        self,
        images: Sequence[Any],
        questions: Sequence[str],
        references: Sequence[str],
        answers: Sequence[str | None],
    ) -> list[float]:
        """One reward per answer (``None`` answers score 0); samples sharing image and question are batched."""
        groups: dict[Hashable, list[int]] = {}
        for i, (image, question, reference) in enumerate(zip(images, questions, references, strict=True)):
            groups.setdefault((image_key(image), str(question), str(reference)), []).append(i)
        out = [0.0] * len(answers)
        for key, members in groups.items():
            first = members[0]
            wanted = sorted(
                {a for a in (answers[i] for i in members) if a is not None and len(a) <= self.max_answer_chars}
            )
            if not wanted:
                continue
            reference = str(references[first])
            cached = self._reference.get(key)
            query = list(wanted) + ([reference] if cached is None else [])
            scores = self.scorer.score(images[first], str(questions[first]), query)
            if len(scores) != len(query):
                raise ScorerError(f"scorer returned {len(scores)} scores for {len(query)} answers")
            if cached is None:
                cached = float(scores[-1])
                self._reference[key] = cached
            by_answer = dict(zip(wanted, scores, strict=False))
            for i in members:
                answer = answers[i]
                if answer is not None and answer in by_answer:
                    out[i] = open_reward(by_answer[answer], cached, self.beta)
        return out
