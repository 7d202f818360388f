"""The mixed reward: one verifier per record (``verifier_type``), on the ``<answer>`` content only.

- ``score(completion, solution, verifier_type, **ctx) -> float``: one completion.
- ``MixedReward(config)``: a TRL reward function (``prompts, completions, solution, verifier_type, **kwargs``
  → ``list[float]``) that also reports per-verifier accuracy and the format-failure rate through TRL's
  ``log_metric`` hook, and the extracted answers through ``log_extra``. ``mixed_reward`` is the default
  instance (paper defaults, no reward model: records of type ``open`` need a configured scorer).
- ``score_file(in, out, config)`` (`thinkflow.rewards.files`): the ``thinkflow rewards score`` command.

An unknown ``verifier_type`` is reported at dataset validation (``validate_verifier_type``,
``check_solution``, ``MixedReward.check``); inside a training step it raises ``UnknownVerifierError`` naming
the type, which validation makes unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkflow.errors import ThinkFlowError
from thinkflow.format import completion_text, extract_answer, is_well_formed, solution_text
from thinkflow.rewards.config import RewardConfig
from thinkflow.rewards.digit import check_digit_solution, digit_reward
from thinkflow.rewards.iou import check_iou_solution, iou_reward
from thinkflow.rewards.math import MathVerifier
from thinkflow.rewards.mcq import check_mcq_solution, mcq_reward
from thinkflow.rewards.open_ended import HTTPScorer, LogProbScorer, OpenEndedReward, Scorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifierSpec:
    """One verifier: its name (the ``verifier_type`` value), what it checks, and its ground-truth check."""

    name: str
    description: str
    check_solution: Callable[[Any], str | None]


def _check_open_solution(solution: Any) -> str | None:
    return None if solution_text(solution) else "open solution (the reference answer) must not be empty"


def _check_math_solution(solution: Any) -> str | None:
    return None if solution_text(solution) else "math solution must not be empty"


VERIFIERS: dict[str, VerifierSpec] = {
    "digit": VerifierSpec("digit", "a number equal to the ground truth after trimming", check_digit_solution),
    "mcq": VerifierSpec("mcq", "the option letter of the ground truth", check_mcq_solution),
    "math": VerifierSpec("math", "math-verify equivalence with the ground truth", _check_math_solution),
    "iou": VerifierSpec("iou", "IoU of the answer box with the ground-truth box", check_iou_solution),
    "open": VerifierSpec("open", "a reward model's score above the reference answer's", _check_open_solution),
}


class UnknownVerifierError(ThinkFlowError, ValueError):
    """A ``verifier_type`` that no verifier handles."""


def validate_verifier_type(value: Any, *, where: str = "") -> str:
    """Return ``value`` if it names a verifier, else raise ``UnknownVerifierError`` naming it and ``where``."""
    if isinstance(value, str) and value in VERIFIERS:
        return value
    prefix = f"{where}: " if where else ""
    raise UnknownVerifierError(f"{prefix}unknown verifier_type {value!r}; known: {', '.join(VERIFIERS)}")


def check_solution(verifier_type: str, solution: Any) -> str | None:
    """A problem with ``solution`` for ``verifier_type`` (e.g. an mcq gold that is no letter), or ``None``.

    For ``math`` this only checks the gold is not empty (a gold math-verify cannot parse scores 0 for every
    answer, as with raw math-verify).
    """
    return VERIFIERS[validate_verifier_type(verifier_type)].check_solution(solution)


# ---------------------------------------------------------------------------------------------------
# Batch scoring
# ---------------------------------------------------------------------------------------------------


@dataclass
class BatchScores:
    """Per-completion results of one batch."""

    rewards: list[float]
    accuracy: list[float]  # the verifier's reward alone
    answers: list[str | None]
    well_formed: list[bool]
    penalties: list[float]
    verifier_types: list[str]

    def means(self) -> dict[str, float]:
        """Metric name → value: ``{vt}/accuracy`` per verifier present, ``format_failure``, extras when on."""
        out: dict[str, float] = {}
        by_type: dict[str, list[float]] = {}
        for vt, acc in zip(self.verifier_types, self.accuracy, strict=True):
            by_type.setdefault(vt, []).append(acc)
        for vt, values in sorted(by_type.items()):
            out[f"{vt}/accuracy"] = sum(values) / len(values)
        n = max(len(self.answers), 1)
        out["format_failure"] = sum(a is None for a in self.answers) / n
        return out


def _question_from_prompt(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list | tuple):
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") == "user":
                return completion_text([{"role": "assistant", "content": message.get("content")}])
    return ""


def _column(kwargs: dict[str, Any], names: Sequence[str], n: int) -> list[Any]:
    for name in names:
        values = kwargs.get(name)
        if isinstance(values, list | tuple) and len(values) == n:
            return list(values)
    return [None] * n


def _first_image(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def _image_size(image: Any, image_root: str | Path | None) -> tuple[float, float] | None:
    """Width and height of an image (PIL, or a local file: only its header is read), else ``None``."""
    size = getattr(image, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        return (float(size[0]), float(size[1]))
    if isinstance(image, str) and "://" not in image and not image.startswith("data:"):
        from PIL import Image

        from thinkflow import images

        try:
            path = images.resolve(image, image_root) if image_root is not None else Path(image)
            with Image.open(path) as im:  # the header only
                return (float(im.size[0]), float(im.size[1]))
        except (OSError, ValueError, Image.DecompressionBombError):  # ImageError is a ValueError
            return None
    return None


def overlong_penalty(length: int, max_tokens: int, buffer: int, penalty: float) -> float:
    """DAPO's soft overlong punishment: 0 up to ``max_tokens − buffer``, then linear down to ``−penalty``."""
    if length <= max_tokens - buffer:
        return 0.0
    if length > max_tokens or buffer == 0:
        return -penalty
    return -penalty * (length - (max_tokens - buffer)) / buffer


class MixedReward:
    """The mixed reward as a TRL reward function (see the module docstring).

    ``scorer`` overrides the reward model built from ``config`` (any object with
    ``score(image, question, answers) -> list[float]``).
    """

    def __init__(
        self,
        config: RewardConfig | None = None,
        *,
        scorer: Scorer | None = None,
        math_verifier: MathVerifier | None = None,
    ) -> None:
        self.config = config or RewardConfig()
        self.__name__ = "mixed_reward"  # TRL names reward functions by __name__
        self._scorer = scorer
        self._open: OpenEndedReward | None = None
        self.math = math_verifier or MathVerifier(
            timeout_s=self.config.timeout_s,
            workers=self.config.math_workers,
            max_answer_chars=self.config.max_answer_chars,
        )

    # -- configuration checks ------------------------------------------------------------------------

    def has_scorer(self) -> bool:
        return self._scorer is not None or self.config.scorer != "none"

    def check(self, verifier_types: Iterable[Any], *, where: str = "dataset") -> None:
        """Fail early (before training) on unknown types, or ``open`` records without a reward model."""
        seen = set()
        for i, vt in enumerate(verifier_types):
            seen.add(validate_verifier_type(vt, where=f"{where} row {i}"))
        if "open" in seen and not self.has_scorer():
            raise ValueError(
                f"{where} has verifier_type 'open' records but no reward model is configured: "
                "set the reward config's scorer to 'http' (scorer_url) or 'logprob' (scorer_model)"
            )
        if "open" in seen and self._scorer is None and self.config.scorer == "http":
            self.config.http_url()  # fails here, before training, when no URL is configured

    def open_reward(self, image_root: str | Path | None = None) -> OpenEndedReward:
        """The open-ended reward, building the configured scorer on first use."""
        if self._open is None:
            scorer = self._scorer
            root = self.config.image_root or image_root
            if scorer is None:
                if self.config.scorer == "http":
                    scorer = HTTPScorer(
                        self.config.http_url(),
                        timeout_s=self.config.scorer_timeout_s,
                        image_root=root,
                        api_key=self.config.http_api_key(),
                    )
                elif self.config.scorer == "logprob":
                    assert self.config.scorer_model is not None
                    scorer = LogProbScorer.from_pretrained(
                        self.config.scorer_model, batch_size=self.config.scorer_batch_size, image_root=root
                    )
                else:
                    raise ValueError(
                        "verifier_type 'open' needs a reward model: set the reward config's scorer to 'http' "
                        "(scorer_url) or 'logprob' (scorer_model), or pass scorer= to MixedReward"
                    )
            self._open = OpenEndedReward(scorer, beta=self.config.beta)
        return self._open

    # -- scoring -------------------------------------------------------------------------------------

    def score_batch(
        self,
        completions: Sequence[Any],
        solutions: Sequence[Any],
        verifier_types: Sequence[Any],
        *,
        images: Sequence[Any] | None = None,
        questions: Sequence[Any] | None = None,
        image_sizes: Sequence[Any] | None = None,
        lengths: Sequence[int | None] | None = None,
        image_root: str | Path | None = None,
    ) -> BatchScores:
        """Score a batch; every sequence has one entry per completion."""
        n = len(completions)
        for name, seq in (("solution", solutions), ("verifier_type", verifier_types)):
            if len(seq) != n:
                raise ValueError(f"{n} completions but {len(seq)} values of {name}")
        types = [validate_verifier_type(vt, where="mixed_reward") for vt in verifier_types]
        answers = [extract_answer(c) for c in completions]
        accuracy = [0.0] * n
        root = self.config.image_root or image_root
        images = list(images) if images is not None else [None] * n
        math_rows = [i for i in range(n) if types[i] == "math"]
        if math_rows:
            scores = self.math.score_many([answers[i] for i in math_rows], [solutions[i] for i in math_rows])
            for i, s in zip(math_rows, scores, strict=True):
                accuracy[i] = s
        open_rows = [i for i in range(n) if types[i] == "open"]
        if open_rows:
            qs = list(questions) if questions is not None else [""] * n
            scores = self.open_reward(root).rewards(
                [images[i] for i in open_rows],
                [qs[i] or "" for i in open_rows],
                [solution_text(solutions[i]) for i in open_rows],
                [answers[i] for i in open_rows],
            )
            for i, s in zip(open_rows, scores, strict=True):
                accuracy[i] = s
        for i in range(n):
            if types[i] == "digit":
                accuracy[i] = digit_reward(answers[i], solutions[i])
            elif types[i] == "mcq":
                accuracy[i] = mcq_reward(answers[i], solutions[i])
            elif types[i] == "iou" and answers[i] is not None:
                size = image_sizes[i] if image_sizes is not None else None
                if size is None and images[i] is not None:
                    size = _image_size(images[i], root)
                accuracy[i] = iou_reward(answers[i], solutions[i], size)
        cfg = self.config
        well_formed = [is_well_formed(c) for c in completions] if cfg.format_weight else [False] * n
        penalties = [0.0] * n
        if cfg.overlong_max_tokens is not None:
            if lengths is None or any(length is None for length in lengths):
                raise ValueError(
                    "the soft overlong penalty needs each completion's length in tokens "
                    "(TRL passes completion_ids; files need a completion_length field)"
                )
            penalties = [
                overlong_penalty(int(length or 0), cfg.overlong_max_tokens, cfg.overlong_buffer, cfg.overlong_penalty)
                for length in lengths
            ]
        rewards = [
            acc + cfg.format_weight * float(ok) + pen
            for acc, ok, pen in zip(accuracy, well_formed, penalties, strict=True)
        ]
        return BatchScores(rewards, accuracy, answers, well_formed, penalties, types)

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        solution: Sequence[Any] | None = None,
        verifier_type: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """TRL's reward-function signature; dataset columns arrive as keyword lists."""
        if completions is None or solution is None or verifier_type is None:
            raise ValueError("mixed_reward needs completions, solution and verifier_type (dataset columns)")
        n = len(completions)
        prompt_list = list(prompts) if prompts is not None else [None] * n
        questions = [
            q if isinstance(q, str) and q else _question_from_prompt(p)
            for q, p in zip(_column(kwargs, ("question",), n), prompt_list, strict=True)
        ]
        images = [_first_image(v) for v in _column(kwargs, ("image", "images"), n)]
        lengths: list[int | None] | None = None
        ids = kwargs.get("completion_ids")
        if isinstance(ids, list | tuple) and len(ids) == n:
            lengths = [len(x) for x in ids]
        elif isinstance(kwargs.get("completion_length"), list | tuple):
            lengths = list(kwargs["completion_length"])
        result = self.score_batch(
            completions,
            solution,
            verifier_type,
            images=images,
            questions=questions,
            image_sizes=kwargs.get("image_size") if isinstance(kwargs.get("image_size"), list) else None,
            lengths=lengths,
        )
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            for name, value in result.means().items():
                log_metric(f"mixed_reward/{name}", value)
            if self.config.format_weight:
                log_metric("mixed_reward/well_formed", sum(result.well_formed) / max(n, 1))
            if self.config.overlong_max_tokens is not None:
                log_metric("mixed_reward/overlong_penalty", sum(result.penalties) / max(n, 1))
            for name, value in open_reward_stats(result).items():
                log_metric(f"open_reward/{name}", value)
        log_extra = kwargs.get("log_extra")
        if callable(log_extra):
            log_extra("verifier_type", list(result.verifier_types))
            log_extra("answer", [a[:200] if a is not None else None for a in result.answers])
        return result.rewards


def open_reward_stats(result: BatchScores) -> dict[str, float]:
    """Mean/std/min/max of the open-ended rewards of a batch (empty without open records), to tune β."""
    values = [a for a, t in zip(result.accuracy, result.verifier_types, strict=True) if t == "open"]
    if not values:
        return {}
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


mixed_reward = MixedReward()
"""The default mixed reward (paper settings; ``open`` records need ``MixedReward(config)`` with a scorer)."""


_CONFIGURED: dict[tuple[str, int], MixedReward] = {}


def _configured(config: RewardConfig | None, scorer: Scorer | None) -> MixedReward:
    """A ``MixedReward`` per (config, scorer), kept so that its caches serve repeated ``score`` calls."""
    if config is None and scorer is None:
        return mixed_reward
    key = ((config or RewardConfig()).model_dump_json(), id(scorer))
    reward = _CONFIGURED.get(key)
    if reward is None or reward._scorer is not scorer:
        if len(_CONFIGURED) >= 16:
            _CONFIGURED.clear()
        reward = _CONFIGURED[key] = MixedReward(config, scorer=scorer)
    return reward


def score(completion: Any, solution: Any, verifier_type: str, **ctx: Any) -> float:
    """The reward of one completion.

    ``ctx``: ``image``, ``question`` (for ``open``), ``image_size`` (``iou`` frames), ``completion_length``
    (overlong penalty), ``config`` (a ``RewardConfig``), ``scorer`` (a reward model for ``open``).
    """
    reward = _configured(ctx.get("config"), ctx.get("scorer"))
    result = reward.score_batch(
        [completion],
        [solution],
        [verifier_type],
        images=[ctx.get("image")],
        questions=[ctx.get("question") or ""],
        image_sizes=[ctx.get("image_size")],
        lengths=[ctx.get("completion_length")],
    )
    return result.rewards[0]
