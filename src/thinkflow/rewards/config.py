"""``RewardConfig``: every knob of the mixed reward, defaults = the paper's recipe."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, model_validator

from thinkflow import env
from thinkflow.config import StageConfig

REWARD_URL_ENV = env.REWARD_URL  # the chart's rewardModel Service, in the thinkflow-env ConfigMap
REWARD_API_KEY_ENV = env.REWARD_API_KEY  # its bearer token, from the reward model's Secret


class RewardConfig(StageConfig):
    """The mixed reward (paper §4.1). Defaults reproduce the paper; the extras are off.

    Reward per completion = verifier reward (in [0, 1], 0 without a valid ``<answer>``)
    + ``format_weight`` × well-formed (0/1) + soft overlong penalty (≤ 0).
    """

    beta: float = Field(
        default=1.0,
        gt=0,
        description="β of the open-ended reward 1 − exp(−β·(S(ŷ) − S(y))). Not stated in the paper: 1.0 is "
        "ThinkFlow's choice; GRPO logs open_reward/mean|std|min|max per step to tune it.",
    )
    scorer: Literal["none", "http", "logprob"] = Field(
        default="none",
        description="Reward model for verifier_type 'open': none (open records are an error), http (a served "
        "model, see scorer_url) or logprob (an in-process VLM, see scorer_model).",
    )
    scorer_url: str | None = Field(
        default=None,
        description=f"HTTP scorer endpoint, e.g. http://reward-model:8000/score; unset: ${REWARD_URL_ENV}.",
    )
    scorer_api_key_env: str | None = Field(
        default=REWARD_API_KEY_ENV, description="Environment variable holding the HTTP scorer's bearer token."
    )
    scorer_model: str | None = Field(default=None, description="Model dir or s3:// URI for the logprob scorer.")
    scorer_batch_size: int = Field(default=8, ge=1, description="Answers per forward pass of the logprob scorer.")
    scorer_timeout_s: float = Field(default=60.0, gt=0, description="HTTP scorer request timeout.")
    image_root: str | None = Field(
        default=None, description="Directory that relative image paths are resolved against (default: the input's)."
    )
    format_weight: float = Field(
        default=0.0,
        ge=0,
        description="DEPARTURE from the paper (which relies on the implicit format reward): add this weight "
        "times 1 when the completion is exactly <think>…</think><answer>…</answer>.",
    )
    overlong_max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="DEPARTURE from the paper: DAPO's soft overlong penalty. Completions longer than "
        "overlong_max_tokens − overlong_buffer tokens lose up to overlong_penalty linearly; off when unset.",
    )
    overlong_buffer: int = Field(default=0, ge=0, description="Length of the soft penalty zone, in tokens.")
    overlong_penalty: float = Field(default=1.0, ge=0, description="Penalty at and beyond overlong_max_tokens.")
    timeout_s: float = Field(default=1.0, gt=0, description="Time bound per math verification (worker process).")
    math_workers: int = Field(default=2, ge=1, description="math-verify worker processes (large batches use all).")
    max_answer_chars: int = Field(default=1000, ge=1, description="Longer math answers score 0 without parsing.")

    @model_validator(mode="after")
    def _check(self) -> RewardConfig:
        if self.scorer == "logprob" and not self.scorer_model:
            raise ValueError("scorer 'logprob' needs scorer_model")
        if self.overlong_max_tokens is not None and self.overlong_buffer >= self.overlong_max_tokens:
            raise ValueError("overlong_buffer must be smaller than overlong_max_tokens")
        return self

    def http_url(self) -> str:
        """The HTTP scorer's URL: ``scorer_url``, else ``$THINKFLOW_REWARD_URL`` (set by the chart)."""
        url = self.scorer_url or os.environ.get(REWARD_URL_ENV)
        if not url:
            raise ValueError(
                f"scorer 'http' needs scorer_url or the {REWARD_URL_ENV} environment variable "
                "(the chart's rewardModel sets it; locally: thinkflow serve-reward)"
            )
        return url

    def http_api_key(self) -> str | None:
        return os.environ.get(self.scorer_api_key_env) or None if self.scorer_api_key_env else None

def default_scorer_model(data: Any, section: str) -> Any:
    """A stage config's raw data with ``<section>.scorer_model`` defaulting to the stage's own ``model`` when
    the scorer is ``logprob`` and no scorer model is set (used as a ``mode="before"`` model validator)."""
    if not isinstance(data, dict) or not isinstance(data.get(section), dict) or not data.get("model"):
        return data
    reward = data[section]
    if reward.get("scorer") == "logprob" and not reward.get("scorer_model"):
        return {**data, section: {**reward, "scorer_model": data["model"]}}
    return data
