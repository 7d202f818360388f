"""The serving smoke test: one fixed image question that a served model must answer in the R1 format.

The request is what a client of the endpoint sends: the paper's system prompt, a drawn image (three red
circles on white) as a ``data:`` URL, a question, greedy decoding. It passes when the answer is well formed
(``<think>…</think><answer>…</answer>``, `thinkflow.rewards.extract.is_well_formed`); the answer's value is
not graded (that is the evaluation's job). The version that answered is read from the response's ``model``
field (``NAME-vVERSION``: the first ``--served-model-name`` of vLLM, the model id of ``thinkflow serve-model
--version-file``). ``serve-sync`` runs it against new pods before marking a version served; ``helm test``
runs it through ``thinkflow serve-smoke``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from thinkflow.records import SYSTEM_PROMPT

SMOKE_QUESTION = "How many red circles are in the image?"


def smoke_image() -> Image.Image:
    """The fixed smoke-test picture: three red circles on white (112x112, deterministic)."""
    image = Image.new("RGB", (112, 112), "white")
    draw = ImageDraw.Draw(image)
    for i in range(3):
        x = 8 + 34 * i
        draw.ellipse((x, 40, x + 26, 66), fill="red", outline="black")
    return image


def smoke_messages(system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """The OpenAI chat messages of the smoke request (system prompt, image, question)."""
    buf = io.BytesIO()
    smoke_image().save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": SMOKE_QUESTION}],
        }
    )
    return messages


@dataclass
class SmokeResult:
    """One smoke request: did it answer well formed, which version answered, and why it failed if it did."""

    ok: bool
    version: str | None
    reason: str
    completion: str = ""


def smoke_request(
    endpoint: str,
    name: str,
    *,
    api_key: str | None = None,
    max_tokens: int = 1024,
    timeout_s: float = 120.0,
) -> SmokeResult:
    """Ask ``endpoint`` (an OpenAI base URL, ``…/v1``) the smoke question as model ``name``; never raises."""
    import openai

    from thinkflow.rewards.extract import is_well_formed
    from thinkflow.serving.resolve import version_from_model_id

    client = openai.OpenAI(base_url=endpoint, api_key=api_key or "none", timeout=timeout_s, max_retries=1)
    try:
        reply = client.chat.completions.create(
            model=name,
            messages=smoke_messages(),  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0.0,
        )
    except openai.OpenAIError as exc:
        return SmokeResult(False, None, f"smoke request to {endpoint} failed: {type(exc).__name__}: {exc}")
    version = version_from_model_id(reply.model or "", name)
    text = (reply.choices[0].message.content or "") if reply.choices else ""
    if not is_well_formed(text):
        shown = text if len(text) <= 200 else text[:200] + "…"
        return SmokeResult(
            False, version, f"answer is not <think>…</think><answer>…</answer>: {shown!r}", completion=text
        )
    return SmokeResult(True, version, "well-formed answer", completion=text)
