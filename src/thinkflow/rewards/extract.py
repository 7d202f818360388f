"""Answer extraction for the rewards: a re-export of `thinkflow.format`, the one home of the answer format.

The reward is computed on the content of the completion's ``<answer>…</answer>`` block only (outside
``<think>``); if none can be extracted every verifier returns 0 (the paper's "implicit format reward").
Kept so that ``thinkflow.rewards.extract`` imports keep working; new code imports `thinkflow.format`.
"""

from thinkflow.format import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    completion_text,
    extract_answer,
    is_well_formed,
    solution_text,
    strip_wrappers,
    visible_text,
)

__all__ = [
    "ANSWER_CLOSE",
    "ANSWER_OPEN",
    "THINK_CLOSE",
    "THINK_OPEN",
    "completion_text",
    "extract_answer",
    "is_well_formed",
    "solution_text",
    "strip_wrappers",
    "visible_text",
]
