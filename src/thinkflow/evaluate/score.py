"""Scoring evaluation predictions through `thinkflow.rewards` (rule verifiers: reward 1 = correct).

The answer is the content of the completion's last ``<answer>…</answer>`` block (outside ``<think>``). When a
completion has no answer block, ``fallback_to_raw`` (on by default, as VLMEvalKit's post-processing does)
scores the visible text instead (the completion without its thinking), so a model that answers without tags
is judged on what it said; the format-compliance rate reports separately how often the tags were right.

Every verdict is the training reward's: the answer is scored by the mixed reward's verifiers (multiple
choice, single or multi-letter, by `thinkflow.rewards.mcq.mcq_reward`), so training and evaluation agree on
every completion. Answers are extracted and aha cues matched by `thinkflow.format`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thinkflow.format import extract_answer, is_well_formed, visible_text

DEFAULT_THRESHOLDS: dict[str, float] = {"iou": 0.5, "open": 0.5}
"""Rewards at or above which a prediction counts as correct (1.0 for every type not listed: rule verifiers
give 1 for a correct answer; ``iou`` is continuous and ``open`` is a reward-model margin in [0, 1))."""


@dataclass
class Scored:
    """One scored prediction."""

    reward: float
    correct: bool
    answer: str | None  # the text that was judged (None: nothing to judge)
    from_answer_tag: bool  # the answer came from an <answer> block (not the raw-text fallback)
    well_formed: bool  # <think>…</think><answer>…</answer>, nothing else
    scored_by: str = "rules"  # rules | judge (the judge extracted the answer, the rules scored it)


def judged_answer(completion: str, *, fallback_to_raw: bool = True) -> tuple[str | None, bool]:
    """``(answer, from_tag)``: the ``<answer>`` content, else (with fallback) the visible text without thinking."""
    answer = extract_answer(completion)
    if answer is not None:
        return answer, True
    if not fallback_to_raw:
        return None, False
    visible = visible_text(completion)
    for tag in ("<answer>", "</answer>"):
        visible = visible.replace(tag, " ")
    visible = visible.strip()
    return (visible or None), False


def score_predictions(
    completions: list[str],
    solutions: list[str],
    verifier_types: list[str],
    *,
    images: list[Any] | None = None,
    questions: list[str] | None = None,
    fallback_to_raw: bool = True,
    thresholds: dict[str, float] | None = None,
    reward: Any | None = None,
) -> list[Scored]:
    """Score completions in one batch through the mixed reward's verifiers (``reward``: a ``MixedReward``).

    The verifier reward (``accuracy`` of the mixed reward: no format bonus, no length penalty) is the score;
    a prediction is correct when it reaches the verifier type's threshold (1.0 unless ``thresholds`` says).
    """
    from thinkflow.rewards import mixed_reward

    n = len(completions)
    if not (len(solutions) == len(verifier_types) == n):
        raise ValueError(f"{n} completions, {len(solutions)} solutions, {len(verifier_types)} verifier types")
    reward = reward or mixed_reward
    judged = [judged_answer(c, fallback_to_raw=fallback_to_raw) for c in completions]
    rewards = [0.0] * n
    batch = [i for i, (answer, _) in enumerate(judged) if answer is not None]
    if batch:
        result = reward.score_batch(
            [f"<answer>{judged[i][0]}</answer>" for i in batch],
            [solutions[i] for i in batch],
            [verifier_types[i] for i in batch],
            images=[images[i] for i in batch] if images is not None else None,
            questions=[questions[i] for i in batch] if questions is not None else None,
            image_sizes=[getattr(images[i], "size", None) for i in batch] if images is not None else None,
        )
        for i, value in zip(batch, result.accuracy, strict=True):
            rewards[i] = float(value)
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    return [
        Scored(
            reward=rewards[i],
            correct=rewards[i] >= limits.get(verifier_types[i], 1.0),
            answer=judged[i][0],
            from_answer_tag=judged[i][1],
            well_formed=bool(is_well_formed(completions[i])),
        )
        for i in range(n)
    ]


def score_prediction(completion: str, solution: str, verifier_type: str, **kwargs: Any) -> Scored:
    """Score one completion (see `score_predictions`)."""
    return score_predictions([completion], [solution], [verifier_type], **kwargs)[0]
