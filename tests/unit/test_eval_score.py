"""Scoring through the rewards (answer tag, raw fallback), aha cues, and benchmark aggregation."""

from __future__ import annotations

from typing import Any

import pytest

from thinkflow.evaluate.metrics import flatten_metrics, summarize, wemath_scores, worst_case
from thinkflow.evaluate.score import judged_answer, score_prediction, score_predictions
from thinkflow.format import AHA_CUES, aha_counts


def test_answer_tag_then_raw_fallback() -> None:
    assert judged_answer("<think>x</think><answer> 42 </answer>") == ("42", True)
    assert judged_answer("<think>it is 7</think> The answer is 42.") == ("The answer is 42.", False)
    assert judged_answer("<think>it is 7</think> The answer is 42.", fallback_to_raw=False) == (None, False)
    assert judged_answer("<think>unclosed thinking 42") == (None, False)


@pytest.mark.parametrize(
    ("completion", "solution", "vtype", "correct"),
    [
        ("<think>count</think><answer>3</answer>", "3", "digit", True),
        ("<think>count</think><answer>31</answer>", "3", "digit", False),
        ("<think>a</think><answer>(C)</answer>", "C", "mcq", True),
        ("<think>a</think><answer>\\frac{1}{2}</answer>", "0.5", "math", True),
        ("C", "C", "mcq", True),  # no tags: the raw text is judged (VLMEvalKit-style)
        ("<answer>A, C</answer>", "A, C", "mcq", True),  # multi-letter key: letter sets
        ("<answer>C, A</answer>", "A, C", "mcq", True),
        ("<answer>A</answer>", "A, C", "mcq", False),
        ("<answer>A, B</answer>", "A, C", "mcq", False),
    ],
)
def test_score_prediction(completion: str, solution: str, vtype: str, correct: bool) -> None:
    scored = score_prediction(completion, solution, vtype)
    assert scored.correct is correct
    assert scored.reward == (1.0 if correct else 0.0)


def test_fallback_off_scores_untagged_zero_and_format_is_separate() -> None:
    assert score_prediction("C", "C", "mcq", fallback_to_raw=False).correct is False
    tagged = score_prediction("<think>x</think><answer>C</answer>", "C", "mcq")
    assert tagged.well_formed and tagged.from_answer_tag
    loose = score_prediction("C", "C", "mcq")
    assert not loose.well_formed and not loose.from_answer_tag and loose.correct


def test_iou_threshold_is_configurable() -> None:
    completion = "<answer>[0, 0, 10, 8]</answer>"  # IoU 0.8 with the box below
    assert score_prediction(completion, "[0, 0, 10, 10]", "iou").correct is True
    assert score_prediction(completion, "[0, 0, 10, 10]", "iou", thresholds={"iou": 0.9}).correct is False
    assert score_prediction(completion, "[0, 0, 10, 10]", "iou").reward == pytest.approx(0.8)


def test_batch_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="2 completions, 1 solutions"):
        score_predictions(["a", "b"], ["a"], ["mcq", "mcq"])


def test_aha_counts_substring_by_default_and_whole_words_as_option() -> None:
    text = "Wait, let me check again. Hmm... double-check: no mistake. Checking is not a cue; awaited neither."
    words = aha_counts(text, match="word")
    assert words["wait"] == 1 and words["again"] == 1 and words["hmm"] == 1 and words["mistake"] == 1
    assert words["double-check"] == 1 and words["check"] == 1  # a whole word: not inside "double-check"
    assert set(words) == set(AHA_CUES)
    subs = aha_counts(text)  # the paper's rule: case-insensitive substrings ("Checking", "awaited" count)
    assert subs["wait"] == 2 and subs["check"] == 3 and subs["double-check"] == 1


def _pred(
    bench: str, correct: bool, group: str | None = None, key: str | None = None, vt: str = "mcq", aha: int = 0
) -> dict[str, Any]:
    return {
        "benchmark": bench,
        "group": group,
        "verifier_type": vt,
        "correct": correct,
        "reward": float(correct),
        "well_formed": correct,
        "from_answer_tag": True,
        "length_tokens": 10 if correct else 20,
        "aha": {"wait": aha},
        "meta": {"key": key} if key else {},
    }


def test_worst_case_needs_every_variant() -> None:
    preds = [
        _pred("dynamath", True, "1"),
        _pred("dynamath", True, "1"),
        _pred("dynamath", True, "2"),
        _pred("dynamath", False, "2"),
    ]
    out = worst_case(preds)
    assert out["worst_case"] == 0.5 and out["average_case"] == 0.75 and out["n_groups"] == 2


def test_wemath_four_dimensions_and_strict_score() -> None:
    rows = []
    # problem 1 (2 steps): all sub-problems right, composite right -> CM
    rows += [_pred("wemath", c, "1", k) for k, c in (("2steps_1", True), ("2steps_2", True), ("2steps_multi", True))]
    # problem 2: all subs right, composite wrong -> IG
    rows += [_pred("wemath", c, "2", k) for k, c in (("2steps_1", True), ("2steps_2", True), ("2steps_multi", False))]
    # problem 3 (3 steps): one sub wrong, composite right -> RM (strict), CM (loose)
    rows += [
        _pred("wemath", c, "3", k)
        for k, c in (("3steps_1", True), ("3steps_2", False), ("3steps_3", True), ("3steps_multi", True))
    ]
    # problem 4: a sub wrong, composite wrong -> IK
    rows += [_pred("wemath", c, "4", k) for k, c in (("2steps_1", False), ("2steps_2", True), ("2steps_multi", False))]
    out = wemath_scores(rows)
    assert (out["CM_strict"], out["IG"], out["RM_strict"], out["IK"], out["n_problems"]) == (1, 1, 1, 1, 4)
    assert (out["CM_loose"], out["RM_loose"]) == (2, 0)
    assert out["strict"] == pytest.approx((4 - 0.5 * 1 - 1 - 1) / 4)
    assert out["loose"] == pytest.approx((4 - 0.5 * 1 - 0 - 1) / 4)


def test_summarize_headline_scores_and_flat_keys() -> None:
    preds = [
        _pred("mathvista", True, aha=2),
        _pred("mathvista", False, vt="math"),
        _pred("dynamath", True, "1"),
        _pred("dynamath", False, "1"),
    ]
    summary = summarize(preds, {"mathvista": "accuracy", "dynamath": "worst_case"}, ["wait"])
    assert summary["benchmarks"]["mathvista"]["score"] == 0.5
    assert summary["benchmarks"]["dynamath"]["score"] == 0.0
    assert summary["overall"]["mean_score"] == 0.25 and summary["overall"]["accuracy"] == 0.5
    assert summary["per_verifier"]["mcq"] == {"accuracy": 2 / 3, "format_rate": 2 / 3, "mean_reward": 2 / 3, "n": 3.0}
    assert summary["aha"]["count.wait"] == 2 and summary["aha"]["responses_with_cue"] == 1
    flat = flatten_metrics(summary)
    assert flat["overall.mean_score"] == 0.25 and flat["mathvista.score"] == 0.5
    assert flat["mathvista.per_verifier.math.accuracy"] == 0.0 and flat["verifier.mcq.accuracy"] == 2 / 3
    assert flat["aha.count.wait"] == 2.0 and flat["mathvista.mean_length"] == 15.0
    assert all(isinstance(v, float) for v in flat.values())
