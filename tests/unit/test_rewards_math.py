"""The math verifier: math-verify semantics, its fast paths, and its time bounds."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from thinkflow.rewards.math import MathVerifier
from thinkflow.rewards.math_fast import analyze, fast_verdict, prepare
from thinkflow.rewards.math_pool import MathPool


@pytest.fixture(scope="module")
def verifier() -> MathVerifier:
    return MathVerifier(workers=1)


def score(verifier: MathVerifier, answer: str, gold: object) -> float:
    return verifier.score_many([answer], [gold])[0]


EQUIVALENT = [
    ("0.5", "\\frac{1}{2}"),
    ("0.5", "\\frac{2}{4}"),
    ("\\frac{1}{2}", "x = \\frac12"),
    ("\\frac{1}{2}", "0.5"),
    ("\\sqrt{18}", "3\\sqrt{2}"),
    ("60^\\circ", "60"),
    ("60", "60^\\circ"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),  # bare LaTeX gold: must be wrapped to parse
    ("\\frac{\\sqrt{3}}{3}", "\\frac{\\sqrt{3}}{3}"),
    ("2x + 1", "1 + 2x"),
    ("(x+1)^2", "x^2 + 2x + 1"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("[1, 3)", "[1, 3)"),
    ("1000", "1,000"),
    ("\\frac{1}{3}", "0.333333"),
    ("2\\pi", "6.283185"),
    ("3", "\\boxed{3}"),
    ("12", "The area is $12$."),
    ("7", "7"),
    (7, "7.0"),
]

DIFFERENT = [
    ("3", "31"),
    ("0.5", "\\frac{1}{3}"),
    ("\\sqrt{2}", "1.414"),
    ("2x + 1", "2x - 1"),
    ("60^\\circ", "\\frac{\\pi}{3}"),
    ("x = 2", "y = 2"),
    ("[1, 3)", "[1, 3]"),
    ("5", "5.0000004"),
    ("5", "five"),
]


@pytest.mark.parametrize(("gold", "answer"), EQUIVALENT)
def test_equivalent_forms_score_one(verifier: MathVerifier, gold: object, answer: str) -> None:
    assert score(verifier, answer, gold) == 1.0


@pytest.mark.parametrize(("gold", "answer"), DIFFERENT)
def test_different_values_score_zero(verifier: MathVerifier, gold: str, answer: str) -> None:
    assert score(verifier, answer, gold) == 0.0


def test_bare_latex_is_wrapped_prose_and_delimited_text_are_not() -> None:
    assert prepare("\\frac{\\sqrt{3}}{3}") == "$\\frac{\\sqrt{3}}{3}$"
    assert prepare(" x = 2 ") == "$x = 2$"
    assert prepare("$x$") == "$x$"
    assert prepare("\\boxed{2}") == "\\boxed{2}"
    assert prepare("The area is 12") == "The area is 12"
    assert prepare("1,22") == "1,22"  # math-verify reads plain numbers with separators only outside LaTeX
    assert prepare("1 000") == "1 000"


# Issue 16: math-verify reads a decimal comma as a decimal point ("1000,99" = 1000.99, "1,22" = 1.22) and a
# thousands separator as one (math_verify/parser.py 0.9.0: ``lazy_expr_regex`` 173-185, ``extract_expr``
# 424-436). Wrapped in $…$ (as ThinkFlow used to wrap every bare answer) LaTeX reads "1,22" as the set {1, 22}.
DECIMAL_COMMAS = [
    ("1000.99", "1000,99", 1.0),
    ("1.22", "1,22", 1.0),
    ("1000.99", "1000,98", 0.0),
    ("1.22", "1,23", 0.0),
    ("1000", "1,000", 1.0),
    ("1000", "1 000", 1.0),
    ("1234567.5", "1,234,567.5", 1.0),
    ("-2.5", "-2,5", 1.0),
]


@pytest.mark.parametrize(("gold", "answer", "expected"), DECIMAL_COMMAS)
def test_decimal_commas_and_separators_get_math_verify_verdict(
    verifier: MathVerifier, gold: str, answer: str, expected: float
) -> None:
    from math_verify import parse, verify

    raw = verify(parse(gold, parsing_timeout=None), parse(answer, parsing_timeout=None), timeout_seconds=None)
    assert float(raw) == expected  # raw math-verify on the texts as given
    assert fast_verdict(analyze(gold), analyze(answer)) is None  # commas and spaces in numbers: math-verify decides
    assert score(verifier, answer, gold) == expected


# Pairs covering each fast-path rule and its limits; the fast verdict must equal raw math-verify's.
FAST_CASES = [
    *EQUIVALENT, *DIFFERENT,
    ("0.5", ".5"), ("1000000", "1,000,000"), ("-4", "-2^2"), ("4", "(-2)^2"), ("\\frac{3}{2}", "1\\frac{1}{2}"),
    ("\\frac{\\pi}{2}", "\\frac{1}{2}\\pi"), ("2\\sqrt{3}\\pi", "2\\pi\\sqrt{3}"), ("8", "2^3"), ("1.5", "3/2"),
    ("6", "2\\times 3"), ("6", "2\\cdot 3"), ("2", "6\\div3"), ("12", "12."), ("5", "+5"), ("3", "\\sqrt9"),
    ("2", "2 3"), ("6", "2(3)"), ("5", "e = 5"), ("30", "30^{\\circ}"), ("30", "30°"), ("0", "-0.0"),
    ("\\sqrt{2}", "\\sqrt{2.0}"), ("100", "10^{2}"), ("0.01", "10^{-2}"), ("3", "003"), ("3.0", "3"),
    ("5", "5.0000000000001"), ("\\sqrt{2}", "1.4142135623730951"), ("\\pi", "3.14159265358979"),
    ("\\dfrac{1}{2}", "0.5"), ("\\tfrac{1}{2}", "0.5"), ("2", "\\sqrt{2}\\sqrt{2}"), ("\\frac{1}{2}", "\\frac{1}{-2}"),
    ("-0.5", "-\\frac{1}{2}"), ("x=2", "2"), ("2\\sqrt{2}", "\\sqrt{8}"), ("1", "\\left(1\\right)"),
    ("0.5", "50\\%"), ("3\\sqrt{3}", "\\sqrt{27}"), ("4\\pi", "12.566370614359172"), ("2^{10}", "1024"),
    ("2^10", "1024"), ("10", "2^10"), ("1", "\\frac{1}{0}"), ("0", "0^{-1}"), ("-1", "\\sqrt{-1}"),
    # variables
    ("2x + 3", "3 + 2x"), ("2x + 3", "2x - 3"), ("2x + 3", "3x + 2"), ("x^2 + 2x + 1", "(x+1)^2"), ("2x", "2y"),
    ("x", "x + 0"), ("x", "y"), ("ab", "ba"), ("2ab", "2ba"), ("y = 2x + 1", "2x + 1"), ("2x + 1", "y = 2x + 1"),
    ("5", "5x"), ("\\frac{x}{2}", "0.5x"), ("x^2", "x2"), ("\\sqrt{x}", "x^{1/2}"), ("3n", "n3"), ("f(x)", "f(x)"),
    ("2\\pi r", "2r\\pi"), ("\\frac{1}{2}bh", "\\frac{bh}{2}"), ("4", "x = 4"), ("x^2 - 1", "(x-1)(x+1)"),
    # intervals
    ("[1, 3)", "[1,3)"), ("[1, 3)", "[1, 4)"), ("[1, 3)", "(1, 3)"), ("(1, 3)", "(1, 3.5)"), ("(1,000)", "(1, 0)"),
    ("[-1, \\frac{1}{2}]", "[-1, 0.5]"), ("(1, 2)", "(2, 1)"), ("[1, 3]", "(1, 3)"), ("(2, 1)", "[2, 1]"),
    # 6-decimal rounding of a decimal against an exact fraction
    ("\\frac{1}{3}", "0.3333333"), ("\\frac{1}{3}", "0.333334"), ("0.166667", "\\frac{1}{6}"),
    ("-\\frac{2}{3}", "-0.666667"),
    ("\\frac{1}{7}", "0.1429"), ("\\frac{1}{7}", "0.14286"), ("5", "5.0000004"), ("\\frac{7}{2}", "3.5000001"),
    # finite sets of numbers; degrees inside \\boxed{}
    ("\\{1, 2\\}", "\\{2, 1\\}"), ("\\{1, 2\\}", "\\{1, 3\\}"), ("\\{1, 2\\}", "\\{1\\}"),
    ("\\{-1, \\frac{1}{2}\\}", "\\{0.5, -1\\}"),
    ("\\{1, 1\\}", "\\{1\\}"), ("135^\\circ", "\\boxed{135°}"), ("135°", "\\boxed{135°}"), ("135", "$135°$"),
    # one formula in a sentence
    ("12", "The answer is $12$."), ("12", "The answer is $13$."), ("12", "Answer: $x = 12$"),
    ("12", "The answer is $12$ or $13$."), ("12", "It is 3 times $4$."),
]


def test_fast_paths_agree_with_raw_math_verify() -> None:
    from math_verify import parse, verify

    decided = 0
    for gold, answer in FAST_CASES:
        fast = fast_verdict(analyze(str(gold)), analyze(answer))
        if fast is None:
            continue
        decided += 1
        raw = verify(parse(prepare(str(gold)), parsing_timeout=None), parse(prepare(answer), parsing_timeout=None),
                     timeout_seconds=None)
        assert fast == raw, (gold, answer, fast, raw)
    assert decided >= len(FAST_CASES) // 2  # the fast paths do take most of these


def test_stats_show_the_fast_paths_and_the_cache(verifier: MathVerifier) -> None:
    v = MathVerifier(pool=verifier.pool)
    trig = ("2\\sin x", "\\sin(x) \\cdot 2")  # functions: beyond the fast paths
    v.score_many(["\\frac{2}{4}", trig[1], trig[1], "0.5"], ["0.5", trig[0], trig[0], "0.5"])
    assert v.stats["numeric"] == 1 and v.stats["exact"] == 1
    assert v.stats["verified"] == 2  # the repeated pair is judged once per batch
    score(v, trig[1], trig[0])
    assert v.stats["cached"] == 1


@pytest.mark.parametrize(
    "answer",
    [
        "10^{10^{10}}",  # sympy evaluates a huge power
        "9^{9^{9^{9}}}",
        "{" * 400 + "1" + "}" * 400,  # deep nesting: slow ANTLR parse
        "\\frac{1}{" * 90 + "2" + "}" * 90,
    ],
    ids=["huge-power", "power-tower", "nested-braces", "nested-fracs"],
)
def test_pathological_answers_are_bounded_and_score_zero(answer: str) -> None:
    v = MathVerifier(workers=1, timeout_s=0.5)
    assert score(v, answer, "3") == 0.0
    assert v.stats["timeout"] + v.stats["crashed"] + v.stats["error"] + v.stats["verified"] == 1


def test_overlong_answers_are_not_parsed(verifier: MathVerifier) -> None:
    v = MathVerifier(pool=verifier.pool, max_answer_chars=50)
    assert score(v, "1" * 51, "1" * 51) == 0.0
    assert v.stats["too_long"] == 1


def test_a_worker_that_cannot_be_interrupted_is_stopped_and_replaced() -> None:
    pool = MathPool(1)
    try:
        # a C-level big-integer power: no signal handler runs inside it, pebble's SIGKILL stops the worker
        results = pool.judge([("$3$", "$10^{10^{10}}$"), ("$2$", "$1+1$")], 0.5)
        assert results == [(False, "timeout"), (True, "ok")]  # the next pair went to a fresh worker
        assert pool.stats["timeout"] == 1 and pool.stats["ok"] == 1
    finally:
        pool.close()


def test_a_crashed_worker_is_replaced() -> None:
    pool = MathPool(1)
    try:
        assert pool.judge([("$1$", "$1$")], 1.0) == [(True, "ok")]
        pid = pool.executor(0).schedule(os.getpid).result()
        os.kill(pid, signal.SIGKILL)  # dies while idle
        assert pool.judge([("$1$", "$2-1$")], 5.0) == [(True, "ok")]
        assert pool.executor(0).schedule(os.getpid).result() != pid
    finally:
        pool.close()


def test_works_from_worker_threads(verifier: MathVerifier) -> None:
    """math-verify's own timeouts need the main thread; ours do not."""
    results: dict[int, float] = {}

    def work(k: int) -> None:
        results[k] = score(verifier, f"\\sin(x) \\cdot {k}", f"{k}\\sin x")  # functions: judged in a worker

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
    with ThreadPoolExecutor(2) as ex:
        assert list(ex.map(lambda a: score(verifier, a, "10^{10^{10}}"), ["3", "4"])) == [0.0, 0.0]


def test_large_batches_are_judged_in_the_pool() -> None:
    v = MathVerifier(workers=2, timeout_s=5.0)
    golds = [f"{k}\\sin x" for k in range(1, 41)]  # functions: always math-verify's
    answers = [f"\\sin(x) \\cdot {k}" if k % 2 else f"{k}\\cos x" for k in range(1, 41)]
    assert v.score_many(answers, golds) == [float(k % 2) for k in range(1, 41)]
    assert v.stats["verified"] == 40 and v.pool.size == 2


def _score_in_child(queue: Any) -> None:
    queue.put(MathVerifier(workers=1).score_many(["\\sin(x) \\cdot 2"], ["2\\sin x"]))


def test_a_multiprocessing_child_with_a_pool_exits() -> None:
    """multiprocessing children skip atexit and join their non-daemon children: the pool must stop first."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_score_in_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=120) == [1.0]
        child.join(60)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
