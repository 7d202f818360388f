"""No input makes a verifier raise, and rewards stay in range (hypothesis property tests)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thinkflow.rewards import MixedReward, extract_answer, score
from thinkflow.rewards.iou import iou_reward, parse_box
from thinkflow.rewards.math import MathVerifier
from thinkflow.rewards.math_fast import analyze, fast_verdict
from thinkflow.rewards.mcq import mcq_reward

RULE_TYPES = ["digit", "mcq", "iou"]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

latex_atoms = st.sampled_from(
    ["\\frac{", "}", "{", "\\sqrt{", "^", "_", "\\left(", "\\right)", "(", ")", "\\pi", "x", "1", "2.5", "-", "+",
     "=", ",", "\\", "$", "\\boxed{", "\\text{", "%", "^\\circ", "\\infty", "e", "i", "9", "0", " ", "\\cdot",
     "<answer>", "</answer>", "<think>", "</think>", "\x00", "\u202e", "\n"]
)
latexish = st.lists(latex_atoms, max_size=60).map("".join)
any_text = st.one_of(st.text(max_size=300), latexish, st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
solutions = st.one_of(any_text, st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.none())
floats = st.floats(allow_nan=True, allow_infinity=True)


def _in_range(value: float) -> bool:
    return math.isfinite(value) and 0.0 <= value <= 1.0


@FAST
@given(any_text, solutions, st.sampled_from(RULE_TYPES))
def test_rule_verifiers_never_raise(text: str, solution: object, verifier_type: str) -> None:
    for completion in (text, f"<think>t</think><answer>{text}</answer>"):
        assert _in_range(score(completion, solution, verifier_type))


@FAST
@given(any_text)
def test_extraction_and_analysis_never_raise(text: str) -> None:
    answer = extract_answer(text)
    assert answer is None or answer == answer.strip()
    analyze(text)
    parse_box(text)


@FAST
@given(st.lists(floats, min_size=4, max_size=4), st.lists(floats, min_size=4, max_size=4))
def test_iou_on_any_numbers_is_in_range(pred: list[float], gold: list[float]) -> None:
    assert _in_range(iou_reward(str(pred), gold))
    assert _in_range(iou_reward(f"[{', '.join(map(str, pred))}]", str(gold), image_size=(gold[0], gold[1])))


# Forms the fast path must leave to math-verify whatever the other side is (issue 16): math-verify's number
# extraction and LaTeX reading of these depend on context (decimal commas, separators, units, percents,
# scientific notation, mixed numbers, text) in ways the fast path does not reproduce.
_DEFERRED_FORMS = [
    "{i},{d:02d}", "{i},{d:03d}", "{i:,}", "{i:,}.{d}", "{i} {d:03d}", "{i}{d}%", "{i}\\%", "{i} percent",
    "{i}.{d}e3", "{i}.{d}\\times10^{{3}}", "{i}\\frac{{1}}{{{d}}}", "{i} apples and {d} pears", "{i}°",
    "\\boxed{{{i}}} and \\boxed{{{d}}}", "${i}$ or ${d}$", "{i}\\text{{ cm}}^2", "({i}, {d}, 1)", "{i}.{d}\\pi",
]


@FAST
@given(st.integers(1000, 10**6), st.integers(1, 999), st.sampled_from(_DEFERRED_FORMS), st.integers(-50, 50))
def test_the_fast_path_defers_context_dependent_number_forms(i: int, d: int, form: str, other: int) -> None:
    text = form.format(i=i, d=d)
    for gold in (str(other), f"{other}.5", "\\frac{1}{3}", text.replace(",", ".")):
        a, b = analyze(gold), analyze(text)
        if a.key is not None and a.key == b.key:
            continue  # rule V1: both normalize to the same LaTeX ("1\\text{ cm}^2" → "1"), math-verify's str match
        assert fast_verdict(a, b) is None, (gold, text)
        assert fast_verdict(b, a) is None, (text, gold)


@pytest.fixture(scope="module")
def math_verifier() -> MathVerifier:
    return MathVerifier(workers=1, timeout_s=0.5)


@SLOW
@given(st.lists(any_text, min_size=1, max_size=8), st.lists(latexish, min_size=1, max_size=8))
def test_math_verifier_never_raises(math_verifier: MathVerifier, answers: list[str], golds: list[str]) -> None:
    n = min(len(answers), len(golds))
    rewards = math_verifier.score_many(answers[:n], golds[:n])
    assert all(r in (0.0, 1.0) for r in rewards)


@pytest.mark.parametrize(
    "answer",
    [
        "1" * 3_000_000,  # MB-size
        "<answer>" * 200_000,
        "\\frac{" * 100_000,
        "{" * 500 + "}" * 500,
        "(" * 100_000,
        "[" + ",".join(["1e308"] * 100_000) + "]",
        "\x00\x01\x02\x1b[31m\u202e\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        "[nan, nan, nan, nan]",
        "[inf, -inf, inf, -inf]",
        "[1, 2, 3, 4" + "]" * 100_000,
        "Option " * 100_000,
    ],
    ids=["digits-3MB", "answer-tags", "fracs", "braces", "parens", "big-floats", "control-chars", "nan-box",
         "inf-box", "brackets", "options"],
)
@pytest.mark.parametrize("verifier_type", ["digit", "mcq", "math", "iou"])
def test_huge_and_hostile_inputs(answer: str, verifier_type: str) -> None:
    completion = f"<think>{answer[:1000]}</think><answer>{answer}</answer>"
    for text in (completion, answer):
        assert _in_range(score(text, "3" if verifier_type != "iou" else "[0, 0, 1, 1]", verifier_type))


def test_hostile_batch_through_the_trl_interface() -> None:
    reward = MixedReward()
    completions = ["<answer>" + "9^{9^{9^{9}}}" + "</answer>", "<answer>[nan,0,1,1]</answer>", "\x00", ""]
    out = reward(completions=completions, solution=["3", "[0,0,1,1]", "C", 3],
                 verifier_type=["math", "iou", "mcq", "digit"])
    assert out == [0.0, 0.0, 0.0, 0.0]
    assert mcq_reward("\x00C\x00", "C") == 0.0
