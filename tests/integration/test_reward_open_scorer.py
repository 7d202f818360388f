"""The open-ended reward with real scorers: the tiny VLM in process, and the same model behind HTTP."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from thinkflow.images import ImageError
from thinkflow.rewards import (
    HTTPScorer,
    LogProbScorer,
    MixedReward,
    RewardConfig,
    ScorerError,
    score_file,
)
from thinkflow.rewards.serve import ScorerServer
from thinkflow.testing import free_port

QUESTION = "Describe the image."
ANSWERS = ["three red circles", "a blue square", "three red circles on a white background"]


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "circles.png"
    im = Image.new("RGB", (112, 84), "white")
    draw = ImageDraw.Draw(im)
    for i in range(3):
        draw.ellipse((10 + 30 * i, 30, 34 + 30 * i, 54), fill="red")
    im.save(path)
    return path


@pytest.fixture(scope="module")
def scorer(tiny_model: Path) -> LogProbScorer:
    return LogProbScorer.from_pretrained(tiny_model, device="cpu", batch_size=2)


def test_logprob_scorer_scores_are_mean_token_logprobs(scorer: LogProbScorer, image_file: Path) -> None:
    image = Image.open(image_file)
    scores = scorer.score(image, QUESTION, ANSWERS)
    assert len(scores) == 3 and all(math.isfinite(s) and s < 0 for s in scores)
    # batching and padding do not change a score; the same inputs give the same score
    singles = [scorer.score(image, QUESTION, [a])[0] for a in ANSWERS]
    assert scores == pytest.approx(singles, abs=1e-4)
    # the image matters, the question matters
    other = Image.new("RGB", (112, 84), "black")
    assert scorer.score(other, QUESTION, ANSWERS[:1])[0] != pytest.approx(scores[0], abs=1e-6)
    assert scorer.score(image, "What color?", ANSWERS[:1])[0] != pytest.approx(scores[0], abs=1e-6)
    # paths resolve against image_root; no image at all also works (text-only prompt)
    rooted = LogProbScorer(scorer.model, scorer.processor, image_root=image_file.parent)
    assert rooted.score(image_file.name, QUESTION, ANSWERS[:1])[0] == pytest.approx(scores[0], abs=1e-4)
    assert math.isfinite(scorer.score(None, QUESTION, ANSWERS[:1])[0])


def test_open_reward_with_the_in_process_scorer(scorer: LogProbScorer, image_file: Path) -> None:
    image = Image.open(image_file)
    s = dict(zip(ANSWERS, scorer.score(image, QUESTION, ANSWERS), strict=True))
    reference = ANSWERS[0]
    reward = MixedReward(RewardConfig(beta=2.0), scorer=scorer)
    completions = [f"<think>looking</think><answer>{a}</answer>" for a in ANSWERS]
    out = reward(
        prompts=[QUESTION] * 3, completions=completions, solution=[reference] * 3, verifier_type=["open"] * 3,
        image=[image] * 3,
    )
    expected = [1 - math.exp(-2.0 * (s[a] - s[reference])) if s[a] > s[reference] else 0.0 for a in ANSWERS]
    assert out == pytest.approx(expected, abs=1e-4)


def test_http_scorer_against_a_loopback_server(scorer: LogProbScorer, image_file: Path) -> None:
    image = Image.open(image_file)
    direct = scorer.score(image, QUESTION, ANSWERS)
    with ScorerServer(scorer, port=free_port()) as server:
        assert httpx.get(server.url.rsplit("/", 1)[0] + "/health").json() == {"status": "ok"}
        client = HTTPScorer(server.url, image_root=image_file.parent)
        # a local file travels as a data URI; an in-memory image too
        assert client.score(image_file.name, QUESTION, ANSWERS) == pytest.approx(direct, abs=1e-4)
        assert client.score(image, QUESTION, ANSWERS) == pytest.approx(direct, abs=1e-4)
        assert client.score(image, QUESTION, []) == []
        # the protocol's error replies
        bad = httpx.post(server.url, json={"question": 3, "answers": "x"})
        assert bad.status_code == 400 and "bad request" in bad.json()["error"]
        once = HTTPScorer(server.url, retries=0)
        with pytest.raises(ScorerError, match=r"HTTP 400.*'image'"):  # the server cannot decode this image
            once.score("data:image/png;base64,AAAA", QUESTION, ["a"])
        with pytest.raises(ImageError, match=r"image not found: 'does-not-exist\.png'"):
            once.score("does-not-exist.png", QUESTION, ["a"])

        # thinkflow rewards score with scorer=http, images relative to the input file
        rows = [
            {"completion": f"<answer>{a}</answer>", "solution": ANSWERS[0], "verifier_type": "open",
             "image": image_file.name, "question": QUESTION}
            for a in ANSWERS
        ] + [{"completion": "<answer>4</answer>", "solution": 4, "verifier_type": "digit"}]
        src = image_file.parent / "open.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        cfg = RewardConfig(scorer="http", scorer_url=server.url, beta=2.0)
        summary = score_file(src, image_file.parent / "open.out.jsonl", cfg, progress=False)
        out = [json.loads(line) for line in (image_file.parent / "open.out.jsonl").read_text().splitlines()]
    s = dict(zip(ANSWERS, direct, strict=True))
    expected = [1 - math.exp(-2.0 * (s[a] - s[ANSWERS[0]])) if s[a] > s[ANSWERS[0]] else 0.0 for a in ANSWERS]
    assert [o["reward"] for o in out] == pytest.approx([*expected, 1.0], abs=1e-4)
    assert summary.to_dict()["open"]["count"] == 3


def test_http_scorer_reports_a_dead_server() -> None:
    client = HTTPScorer(f"http://127.0.0.1:{free_port()}/score", retries=1, timeout_s=2.0)
    with pytest.raises(ScorerError, match="failed after 2 attempts"):
        client.score(None, QUESTION, ["a"])
