"""Our OpenAI-compatible server on transformers (`thinkflow serve-model`) serving the tiny VLM, and the six
build steps against it. ``transformers serve`` drops image parts, so the tests check that ours does not:
``usage.prompt_tokens`` grows when the image is included."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from thinkflow.data.build import BuildConfig, run
from thinkflow.data.sources import SyntheticSource
from thinkflow.records import read_jsonl
from thinkflow.testing import model_server
from thinkflow.testing.scripted import Ask, ScriptedTeacher

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[str]:
    with model_server(tiny_model, name="tiny") as url:
        yield url


def _data_url(colour: str, size: tuple[int, int] = (112, 112)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_image_parts_reach_the_model(server: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="EMPTY")
    assert [m.id for m in client.models.list().data] == ["tiny"]
    text = [{"type": "text", "text": "What colour is this?"}]
    plain = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": text}], max_tokens=4, temperature=0
    )
    small = client.chat.completions.create(
        model="tiny",
        messages=[
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": _data_url("red", (56, 56))}}, *text],
            }
        ],
        max_tokens=4,
        temperature=0,
    )
    large = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _data_url("red")}}, *text]}],
        max_tokens=4,
        temperature=0,
    )
    assert plain.usage and small.usage and large.usage
    assert plain.usage.prompt_tokens < small.usage.prompt_tokens < large.usage.prompt_tokens
    assert 1 <= large.usage.completion_tokens <= 4 and large.choices[0].finish_reason in ("stop", "length")
    again = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _data_url("red")}}, *text]}],
        max_tokens=4,
        temperature=0,
    )
    assert again.choices[0].message.content == large.choices[0].message.content  # greedy is deterministic
    stats = httpx.get(server.removesuffix("/v1") + "/stats").json()
    assert stats["images"] >= 3


def test_bad_requests_get_openai_errors(server: str) -> None:
    client = openai.OpenAI(base_url=server, api_key="EMPTY", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="only data: URLs"):
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}],
        )
    with pytest.raises(openai.BadRequestError, match="cannot decode the image"):
        client.chat.completions.create(
            model="tiny",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
            ],
        )


def _tiny(url: str, max_tokens: int) -> dict[str, Any]:
    # Sampled with a fixed seed per request: deterministic, and a random model says more than greedy newlines.
    return {
        "base_url": url,
        "model": "tiny",
        "temperature": 1.0,
        "max_tokens": max_tokens,
        "concurrency": 2,
        "extra_body": {"seed": 0},
    }


def test_six_steps_against_the_tiny_model(server: str, tmp_path: Path) -> None:
    n = 10
    before = httpx.get(server.removesuffix("/v1") + "/stats").json()
    # 1) every teacher is the tiny model: a random model writes no <think>…</think>, so its records stop at step 3
    out = tmp_path / "all-tiny"
    cfg = BuildConfig(
        output_dir=str(out),
        sources=[SyntheticSource(n=n, responses=False)],
        teachers={k: _tiny(server, 24) for k in ("caption", "reason", "rewrite", "judge")},
        tracking=False,
        progress=False,
    )
    run(cfg)
    after = httpx.get(server.removesuffix("/v1") + "/stats").json()
    manifest = json.loads((out / "manifest.json").read_text())
    tokens = manifest["tokens"]
    assert tokens["caption"]["calls"] == n and after["images"] - before["images"] == n
    assert tokens["total"]["prompt"] == after["prompt_tokens"] - before["prompt_tokens"]
    assert tokens["total"]["completion"] == after["completion_tokens"] - before["completion_tokens"]
    assert manifest["teachers"]["caption"]["served_models"] == ["tiny"]
    rejected = list(read_jsonl(out / "rejected.jsonl"))
    assert manifest["counts"]["total"] + len(rejected) == n
    assert all(r["step"] in ("caption", "reason", "rewrite", "verify") and r["reason"] for r in rejected)
    captions = [e["out"]["caption"] for e in read_jsonl(out / ".build" / "2-caption.jsonl")]
    assert len(captions) == n and all(isinstance(c, str) and c for c in captions)

    # 2) an R1-style reasoner (scripted: it mentions the caption and answers) so that steps 4 and 5 run on the
    #    tiny model too: it rewrites (any length accepted here) and judges every type
    def reasoner(ask: Ask) -> str:
        return "<think>The caption says what is in the image; counting gives three.</think>\n\n**Answer:** 3"

    out2 = tmp_path / "mixed"
    with ScriptedTeacher(reasoner) as srv:
        teachers = {k: _tiny(server, 24) for k in ("caption", "rewrite", "judge")}
        teachers["reason"] = {"base_url": srv.url, "model": "r1"}
        before = httpx.get(server.removesuffix("/v1") + "/stats").json()
        cfg2 = BuildConfig(
            output_dir=str(out2),
            sources=[SyntheticSource(n=n, responses=False)],
            teachers=teachers,
            rewrite={"max_word_delta": 10_000},
            verify={"rule_types": []},
            tracking=False,
            progress=False,
        )
        run(cfg2)
    after = httpx.get(server.removesuffix("/v1") + "/stats").json()
    manifest = json.loads((out2 / "manifest.json").read_text())
    tokens = manifest["tokens"]
    assert (
        tokens["caption"]["calls"]
        == tokens["reason"]["calls"]
        == tokens["rewrite"]["calls"]
        == tokens["judge"]["calls"]
        == n
    )
    assert after["requests"] - before["requests"] == 3 * n  # caption, rewrite and judge on the tiny model
    kept = manifest["counts"]["total"]
    rejected = list(read_jsonl(out2 / "rejected.jsonl"))
    assert kept + len(rejected) == n
    assert all(r["step"] in ("rewrite", "verify") for r in rejected)
    for split in ("sft", "rl", "eval"):
        for row in read_jsonl(out2 / f"{split}.jsonl") if (out2 / f"{split}.jsonl").exists() else []:
            assert row["response"].startswith("<think>") and row["meta"]["verified_by"] == "judge"
