"""The mixed reward of the VLAA-Thinker recipe (paper §4.1, Fig. 4).

``score(completion, solution, verifier_type, **ctx) -> float`` scores one completion; ``mixed_reward`` is a
TRL reward function (``MixedReward(config)`` for a configured one); ``score_file`` backs
``thinkflow rewards score``. Verifiers: ``digit``, ``mcq``, ``math``, ``iou``, ``open`` (see ``VERIFIERS``);
all of them score only the ``<answer>`` content and give 0 when there is none (implicit format reward).
"""

from thinkflow.format import completion_text, extract_answer, is_well_formed
from thinkflow.rewards.config import RewardConfig
from thinkflow.rewards.files import RewardInputError, ScoreSummary, score_file
from thinkflow.rewards.math import MathVerifier
from thinkflow.rewards.mixed import (
    VERIFIERS,
    BatchScores,
    MixedReward,
    UnknownVerifierError,
    VerifierSpec,
    check_solution,
    mixed_reward,
    score,
    validate_verifier_type,
)
from thinkflow.rewards.open_ended import HTTPScorer, LogProbScorer, Scorer, ScorerError, open_reward

__all__ = [
    "VERIFIERS",
    "BatchScores",
    "HTTPScorer",
    "LogProbScorer",
    "MathVerifier",
    "MixedReward",
    "RewardConfig",
    "RewardInputError",
    "ScoreSummary",
    "Scorer",
    "ScorerError",
    "UnknownVerifierError",
    "VerifierSpec",
    "check_solution",
    "completion_text",
    "extract_answer",
    "is_well_formed",
    "mixed_reward",
    "open_reward",
    "score",
    "score_file",
    "validate_verifier_type",
]
