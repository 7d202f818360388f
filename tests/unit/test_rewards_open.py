"""The open-ended reward: the formula, S(y) caching and batching, with a scorer of known outputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from thinkflow.rewards import MixedReward, RewardConfig, open_reward
from thinkflow.rewards.open_ended import OpenEndedReward, Scorer, ScorerError, image_key


class TableScorer:
    """Known scores per answer text; records every call."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.calls: list[tuple[Any, str, list[str]]] = []

    def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]:
        self.calls.append((image, question, list(answers)))
        return [self.table[a] for a in answers]


def test_formula() -> None:
    assert open_reward(2.0, 1.0, beta=1.0) == pytest.approx(1 - math.exp(-1.0))
    assert open_reward(3.0, 1.0, beta=0.5) == pytest.approx(1 - math.exp(-1.0))
    assert open_reward(1.0, 1.0, beta=1.0) == 0.0  # not better than the reference
    assert open_reward(0.5, 1.0, beta=1.0) == 0.0
    assert open_reward(1e9, 0.0, beta=1.0) == pytest.approx(1.0)
    assert open_reward(math.nan, 0.0, beta=1.0) == 0.0
    assert open_reward(math.inf, 0.0, beta=1.0) == 0.0
    assert open_reward("x", 0.0, beta=1.0) == 0.0  # type: ignore[arg-type]


def test_reward_uses_scores_relative_to_the_reference() -> None:
    scorer = TableScorer({"ref": 1.0, "good": 3.0, "same": 1.0, "bad": -2.0})
    assert isinstance(scorer, Scorer)
    reward = OpenEndedReward(scorer, beta=0.7)
    got = reward.rewards(["img.png"] * 4, ["q"] * 4, ["ref"] * 4, ["good", "same", "bad", None])
    assert got == pytest.approx([1 - math.exp(-0.7 * 2.0), 0.0, 0.0, 0.0])


def test_one_call_per_sample_and_reference_scored_once() -> None:
    scorer = TableScorer({"ref1": 0.0, "ref2": 5.0, "a": 1.0, "b": 2.0, "c": 6.0})
    reward = OpenEndedReward(scorer, beta=1.0)
    images = ["x.png", "x.png", "x.png", "y.png", "y.png"]
    questions = ["q1", "q1", "q1", "q2", "q2"]
    refs = ["ref1", "ref1", "ref1", "ref2", "ref2"]
    first = reward.rewards(images, questions, refs, ["a", "b", "a", "c", "a"])
    assert len(scorer.calls) == 2  # one per (image, question)
    assert scorer.calls[0] == ("x.png", "q1", ["a", "b", "ref1"])  # duplicates scored once; reference last
    assert first == pytest.approx([1 - math.exp(-1), 1 - math.exp(-2), 1 - math.exp(-1), 1 - math.exp(-1), 0.0])
    reward.rewards(images[:2], questions[:2], refs[:2], ["b", "b"])
    assert scorer.calls[-1] == ("x.png", "q1", ["b"])  # S(y) came from the cache


def test_scorer_returning_the_wrong_count_is_an_error() -> None:
    class Short:
        def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]:
            return []

    with pytest.raises(ScorerError, match="0 scores for 2 answers"):
        OpenEndedReward(Short()).rewards([None], ["q"], ["ref"], ["a"])


def test_image_keys_identify_pixels() -> None:
    from PIL import Image

    a, b = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "red")
    assert image_key(a) == image_key(b) != image_key(Image.new("RGB", (4, 4), "blue"))
    assert image_key("a.png") == "a.png" and image_key(None) is None
    assert image_key(b"bytes") == image_key({"bytes": b"bytes"})


def test_mixed_reward_routes_open_records_to_the_scorer() -> None:
    scorer = TableScorer({"a cat on a mat": 0.0, "a cat sitting on a red mat": 2.0})
    reward = MixedReward(RewardConfig(beta=1.0), scorer=scorer)
    completions = [
        "<think>look</think><answer>a cat sitting on a red mat</answer>",
        "<think>look</think>",  # no answer: 0, never scored
    ]
    out = reward(
        prompts=["Describe.", "Describe."],
        completions=completions,
        solution=["a cat on a mat"] * 2,
        verifier_type=["open"] * 2,
        image=["cat.png", "cat.png"],
    )
    assert out == pytest.approx([1 - math.exp(-2.0), 0.0])
    assert scorer.calls == [("cat.png", "Describe.", ["a cat sitting on a red mat", "a cat on a mat"])]


def test_open_without_a_scorer_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="no reward model is configured"):
        MixedReward().check(["math", "open"])
    monkeypatch.delenv("THINKFLOW_REWARD_URL", raising=False)
    with pytest.raises(ValueError, match="needs scorer_url or the THINKFLOW_REWARD_URL"):
        MixedReward(RewardConfig(scorer="http")).check(["open"])
    MixedReward(RewardConfig(scorer="http")).check(["digit"])  # no open records: no URL needed
    MixedReward(RewardConfig(scorer="http", scorer_url="http://127.0.0.1:1/score")).check(["open"])
    monkeypatch.setenv("THINKFLOW_REWARD_URL", "http://rm.example:8000/score")  # the chart's thinkflow-env
    assert RewardConfig(scorer="http").http_url() == "http://rm.example:8000/score"
    MixedReward(RewardConfig(scorer="http")).check(["open"])


def test_open_reward_distribution_is_logged_per_batch() -> None:
    from thinkflow.rewards.mixed import BatchScores, open_reward_stats

    result = BatchScores(
        [0.0] * 4, [0.2, 0.6, 1.0, 0.0], [None] * 4, [False] * 4, [0.0] * 4, ["open", "open", "mcq", "open"]
    )
    stats = open_reward_stats(result)
    assert stats["mean"] == pytest.approx(0.8 / 3) and stats["min"] == 0.0 and stats["max"] == 0.6
    assert stats["std"] == pytest.approx((((0.2 - 0.8 / 3) ** 2 + (0.6 - 0.8 / 3) ** 2 + (0.8 / 3) ** 2) / 3) ** 0.5)
    assert open_reward_stats(BatchScores([1.0], [1.0], [None], [False], [0.0], ["mcq"])) == {}
