"""The optional LLM judge of the evaluation: answer extraction by an OpenAI-compatible model, as VLMEvalKit does.

VLMEvalKit scores the paper's six benchmarks with a judge model (``gpt-4o-mini`` by default:
``run.py``, the judge selection for 'MathVista', 'MathVerse', 'MathVision', 'DynaMath', 'LogicVista', and
for WeMath among the MCQ datasets; open-compass/VLMEvalKit). Its flow, e.g.
``vlmeval/dataset/utils/mathvista.py`` ``MathVista_auxeval``: first a rule-based "prefetch" of the answer
from the response; when that does not already give the right answer, the judge is asked to *extract* the
final answer from the response, and the extracted answer is compared with the key by rules (``post_check``).
The judge never decides correctness itself.

ThinkFlow does the same: the rule verdict (`thinkflow.evaluate.score`, the training reward's verifiers)
stands when it is correct; otherwise, for the benchmarks in ``judge.benchmarks``, the judge extracts the
answer and the same verifiers score it. Without a ``judge`` every benchmark is scored by rules, and the
report says which mode scored each benchmark. The judge's prompt is ThinkFlow's own wording.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import Field

from thinkflow.data.teachers import Teacher, TeacherConfig, TeacherError
from thinkflow.evaluate.score import Scored, score_predictions

log = logging.getLogger(__name__)

# The benchmarks VLMEvalKit scores with a judge model (run.py): all six of the paper's Table 4.
VLMEVALKIT_JUDGED: tuple[str, ...] = ("mathvista", "mathvision", "mathverse", "dynamath", "wemath", "logicvista")


class JudgeConfig(TeacherConfig):
    """An OpenAI-compatible judge endpoint (``base_url``, ``model``, ``api_key_env``) and the benchmarks it scores."""

    temperature: float | None = Field(default=0.0, ge=0, description="Sampling temperature (0: deterministic).")
    max_tokens: int | None = Field(default=128, ge=1, description="Budget of one extraction (VLMEvalKit: 128).")
    timeout: float = Field(default=120.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(default=4, ge=0, description="Retries on 408/409/425/429/5xx and connection errors.")
    benchmarks: list[str] = Field(
        default_factory=lambda: list(VLMEVALKIT_JUDGED),
        description="Benchmarks scored with the judge (default: those VLMEvalKit judges); others use rules.",
    )


_KIND = {
    "mcq": "the option letter (or letters, comma-separated) the response chose",
    "digit": "the final integer",
    "math": "the final mathematical answer (a number, expression or value, without units)",
    "iou": "the final bounding box as [x1, y1, x2, y2]",
    "open": "the final short answer",
}


def extraction_messages(question: str, response: str, verifier_type: str) -> list[dict[str, str]]:
    """The judge's request: extract the final answer of ``response`` to ``question`` (never grade it)."""
    want = _KIND.get(verifier_type, _KIND["open"])
    instructions = (
        "You read a model's response to a question and report the final answer the response gives. "
        f"Report {want}. Do not solve the question yourself and do not judge whether the answer is right. "
        "Reply with the extracted answer only, nothing else; reply NONE when the response gives no final answer."
    )
    user = f"Question:\n{question}\n\nModel response:\n{response}\n\nExtracted answer:"
    return [{"role": "system", "content": instructions}, {"role": "user", "content": user}]


@dataclass
class Extraction:
    """What the judge extracted (``None``: no answer, or the call failed) and whether the call failed."""

    answer: str | None
    failed: bool = False


async def _extract_all(cfg: JudgeConfig, items: Sequence[tuple[str, str, str]]) -> list[Extraction]:
    judge = Teacher("judge", cfg)
    try:

        async def one(question: str, response: str, vt: str) -> Extraction:
            try:
                reply = await judge.chat(extraction_messages(question, response, vt))
            except TeacherError as exc:
                log.warning("judge: %s", exc)
                return Extraction(None, failed=True)
            text = reply.text.strip().strip("`").strip()
            return Extraction(None if not text or text.upper() == "NONE" else text)

        return list(await asyncio.gather(*(one(q, r, vt) for q, r, vt in items)))
    finally:
        await judge.aclose()


def extract_answers(cfg: JudgeConfig, items: Sequence[tuple[str, str, str]]) -> list[Extraction]:
    """Ask the judge to extract the final answer of each ``(question, response, verifier_type)``.

    A call that fails after its retries gives ``Extraction(None, failed=True)`` (scored incorrect, as
    VLMEvalKit does after its retries) and is counted by the caller.
    """
    if not items:
        return []
    return asyncio.run(_extract_all(cfg, items))


def check_reachable(cfg: JudgeConfig) -> None:
    """Fail fast (before generation) when the judge endpoint does not answer; the error names ``judge.base_url``."""

    async def probe() -> str | None:
        judge = Teacher("judge", cfg)
        try:
            return await judge.reachable(timeout=min(cfg.timeout, 30.0))
        finally:
            await judge.aclose()

    problem = asyncio.run(probe())
    if problem:
        raise ValueError(f"judge.base_url {cfg.base_url}: the judge endpoint is not reachable ({problem})")


def _judge_input(scored: Scored, completion: str) -> str:
    """What the judge reads: the ``<answer>`` content when there is one, else the whole response."""
    return scored.answer if scored.from_answer_tag and scored.answer is not None else completion


def rescore_with_judge(
    cfg: JudgeConfig,
    scored: list[Scored],
    completions: Sequence[str],
    benchmarks: Sequence[str],
    questions: Sequence[str],
    solutions: Sequence[str],
    verifier_types: Sequence[str],
    *,
    images: Sequence[Any] | None = None,
    thresholds: dict[str, float] | None = None,
    reward: Any | None = None,
) -> tuple[list[Scored], int]:
    """Judge mode for the predictions of ``cfg.benchmarks``: ``(scored, failed judge calls)``.

    A prediction the rules already score correct keeps its verdict (VLMEvalKit's prefetch). Every other one
    is sent to the judge as VLMEvalKit's VLAA-Thinker post-processing hands it over (the ``<answer>``
    content when there is one, else the whole response: vlmeval/vlm/vlaa_thinker.py
    ``extract_response_for_eval``); the extracted answer is then scored by the same verifiers and the
    predictions sent to the judge are marked ``scored_by="judge"``.
    """
    judged = set(cfg.benchmarks)
    out = list(scored)
    rows = [i for i, sc in enumerate(scored) if benchmarks[i] in judged and not sc.correct and completions[i].strip()]
    for i in rows:
        out[i] = replace(out[i], scored_by="judge")
    items = [(questions[i], _judge_input(scored[i], completions[i]), verifier_types[i]) for i in rows]
    extractions = extract_answers(cfg, items)
    found = [(i, e.answer) for i, e in zip(rows, extractions, strict=True) if e.answer is not None]
    if found:
        again = score_predictions(
            [f"<answer>{answer}</answer>" for _, answer in found],
            [solutions[i] for i, _ in found],
            [verifier_types[i] for i, _ in found],
            images=[images[i] for i, _ in found] if images is not None else None,
            questions=[questions[i] for i, _ in found],
            fallback_to_raw=False,
            thresholds=thresholds,
            reward=reward,
        )
        for (i, answer), sc in zip(found, again, strict=True):
            out[i] = replace(out[i], reward=sc.reward, correct=sc.correct, answer=answer)
    return out, sum(e.failed for e in extractions)
