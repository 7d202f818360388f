"""Scoring evaluation predictions through `thinkflow.rewards` (rule verifiers: reward 1 = correct).

The answer is the content of the completion's last ``<answer>…</answer>`` block (outside ``<think>``). When a
completion has no answer block, ``fallback_to_raw`` (on by default, as VLMEvalKit's post-processing does)
scores the visible text instead (the completion without its thinking), so a model that answers without tags
is judged on what it said; the format-compliance rate reports separately how often the tags were right.

Multi-letter multiple-choice keys (some LogicVista items, ``"A, C"``) are matched as sets of option letters,
each letter read with the rewards' own ``option_letter``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from thinkflow.records import AHA_CUES

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


def judged_answer(completion: str, *, fallback_to_raw: bool = True) -> tuple[str | None, bool]:
    """``(answer, from_tag)``: the ``<answer>`` content, else (with fallback) the visible text without thinking."""
    from thinkflow.rewards.extract import extract_answer, visible_text

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


_LETTER_SPLIT = re.compile(r"\s*(?:,|;|\band\b|&|/)\s*")


def _letters(text: str) -> frozenset[str] | None:
    from thinkflow.rewards.mcq import option_letter

    parts = [p for p in _LETTER_SPLIT.split(text.strip()) if p]
    if len(parts) < 2:
        return None
    letters = [option_letter(p) for p in parts]
    if any(x is None for x in letters):
        return None
    return frozenset(x for x in letters if x is not None)


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
    from thinkflow.rewards import is_well_formed, mixed_reward
    from thinkflow.rewards.mcq import option_letter

    n = len(completions)
    if not (len(solutions) == len(verifier_types) == n):
        raise ValueError(f"{n} completions, {len(solutions)} solutions, {len(verifier_types)} verifier types")
    reward = reward or mixed_reward
    judged = [judged_answer(c, fallback_to_raw=fallback_to_raw) for c in completions]
    rewards = [0.0] * n
    batch = []
    for i, ((answer, _), solution, vt) in enumerate(zip(judged, solutions, verifier_types, strict=True)):
        if answer is None:
            continue
        want = _letters(solution) if vt == "mcq" else None
        if want is not None:  # multi-letter key: compare letter sets
            got = _letters(answer)
            if got is None:
                single = option_letter(answer)
                got = frozenset({single}) if single else None
            rewards[i] = 1.0 if got == want else 0.0
        else:
            batch.append(i)
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


def aha_counts(text: str, keywords: tuple[str, ...] | list[str] = AHA_CUES) -> dict[str, int]:
    """Occurrences of each aha keyword in ``text`` (case-insensitive, whole words/phrases)."""
    lowered = text.lower()
    counts = {}
    for kw in keywords:
        pattern = r"(?<![A-Za-z])" + re.escape(kw.lower()) + r"(?![A-Za-z])"
        counts[kw] = len(re.findall(pattern, lowered))
    return counts
