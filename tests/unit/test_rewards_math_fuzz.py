"""Differential fuzzer: the math fast path never disagrees with raw math-verify (issue 16).

Hypothesis draws gold answers and predictions around them (equivalent forms, near and far values,
other surface forms: signs, thousands separators, decimal commas, percents, units, scientific notation,
mixed numbers, ``\\frac``/``\\dfrac``/``\\tfrac``, surds, π, degrees, intervals, sets, ``x = …``, text
around, ``\\boxed``, ``$…$``). For every pair the fast path decides (``fast_verdict`` is not ``None``),
its verdict must equal raw math-verify 0.9.0 on the same texts: ``verify(parse(prepare(gold)),
parse(prepare(pred)))``, run here in the main thread with math-verify's own ``signal.alarm`` timeouts.
Pairs the fast path leaves to math-verify cost nothing here (the verifier sends them to math-verify).

Reproducing a failure: the run is seeded (``THINKFLOW_FUZZ_SEED``, default 0, printed in the failure), so
``THINKFLOW_FUZZ_SEED=<seed> pytest tests/unit/test_rewards_math_fuzz.py`` replays the same examples; the
failing pair is printed too. ``THINKFLOW_FUZZ_EXAMPLES`` changes the number of examples (default 700: 3 golds
× 10 predictions each, 21,000 pairs). Raw math-verify's LaTeX parser is slow (tens of ms per text), so each
example pairs every gold with every prediction and parses are cached per text: only texts of decided pairs
are ever parsed.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from thinkflow.rewards.math_fast import analyze, fast_verdict, prepare

SEED = int(os.environ.get("THINKFLOW_FUZZ_SEED", "0"))
EXAMPLES = int(os.environ.get("THINKFLOW_FUZZ_EXAMPLES", "700"))
GOLDS_PER_EXAMPLE = 3
PREDS_PER_EXAMPLE = 10
MIN_PAIRS = 20_000

# ---------------------------------------------------------------------------------------------------
# Surface forms
# ---------------------------------------------------------------------------------------------------


def _int_forms(n: int) -> list[str]:
    s = str(n)
    a = abs(n)
    sign = "-" if n < 0 else ""
    forms = [s, f"{s}.0", f"{s}.00", f"+{s}" if n >= 0 else f"- {a}", f"{sign}{a:,}", f"{sign}{a:,}".replace(",", " "),
             f"{sign}00{a}", f"{s}^\\circ", f"{s}^{{\\circ}}", f"{s}°", f"{s}\\%", f"{s}%", f"{s} percent",
             f"{s} m", f"{s}\\text{{ cm}}", f"{s}t", f"{s} s", f"{s}.", f"x = {s}", f"y={s}", f"{s} \\cdot 1",
             f"{s}\\times 1", f"{s}e0", f"{s}\\times10^{{0}}", f"\\frac{{{2 * n}}}{{2}}", f"{s}/1", f"({s})",
             f"\\left({s}\\right)", f"{{{s}}}", f"{s}\\,", f"{sign}{a // 1000},{a % 1000:03d}" if a >= 1000 else s]
    return forms


def _decimal_text(value: Fraction, places: int) -> str:
    q = round(value * 10**places)
    sign = "-" if q < 0 else ""
    q = abs(q)
    whole, frac = divmod(q, 10**places)
    return f"{sign}{whole}.{frac:0{places}d}" if places else f"{sign}{whole}"


def _fraction_forms(p: int, q: int) -> list[str]:
    value = Fraction(p, q)
    sign = "-" if value < 0 else ""
    ap, aq = abs(value.numerator), value.denominator
    forms = [f"{sign}\\frac{{{ap}}}{{{aq}}}", f"\\frac{{{sign}{ap}}}{{{aq}}}", f"{sign}\\dfrac{{{ap}}}{{{aq}}}",
             f"{sign}\\tfrac{{{ap}}}{{{aq}}}", f"{sign}{ap}/{aq}", f"{sign}\\frac{{{2 * ap}}}{{{2 * aq}}}",
             f"\\frac{{{ap}}}{{{sign}{aq}}}", f"{sign}{ap} / {aq}", f"{sign}{ap}\\div{aq}", f"{sign}\\frac {ap} {aq}"]
    if ap < 10 and aq < 10:
        forms.append(f"{sign}\\frac{ap}{aq}")
    if ap > aq:  # mixed number
        whole, rest = divmod(ap, aq)
        forms += [f"{sign}{whole}\\frac{{{rest}}}{{{aq}}}", f"{sign}{whole} \\frac{{{rest}}}{{{aq}}}"]
    for places in (1, 2, 3, 4, 5, 6, 7, 8):
        forms.append(_decimal_text(value, places))
    forms.append(_decimal_text(value, 6).replace(".", ","))
    forms.append(_decimal_text(value, 2).replace(".", ","))
    return forms


def _surd_forms(a: int, b: int) -> list[str]:
    value = a * b**0.5
    return [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a} \\sqrt{{{b}}}", f"{a}\\sqrt{b}",
            f"\\sqrt{{{b}}} \\cdot {a}", f"\\sqrt{{{b}}}{a}", f"{a}\\times\\sqrt{{{b}}}", f"{a}\\sqrt{{{b}}}+0",
            f"{value:.6f}", f"{value:.3f}", f"{value:.7f}", f"{a}*\\sqrt{{{b}}}", f"{a}\\sqrt{{{b}.0}}",
            f"\\frac{{{2 * a}\\sqrt{{{b}}}}}{{2}}", f"{a}\\sqrt {b}", f"{a}\\sqrt{{{b}}}^2"]


def _pi_forms(k: int, m: int) -> list[str]:
    value = Fraction(k, m)
    deg = value * 180
    forms = [f"\\frac{{{k}\\pi}}{{{m}}}", f"\\frac{{{k}}}{{{m}}}\\pi", f"{k}\\pi/{m}", f"\\frac{{{k}}}{{{m}}} \\pi",
             f"{float(value) * 3.141592653589793:.6f}", f"{float(value) * 3.141592653589793:.2f}",
             f"{float(value) * 3.14:.4f}", f"\\pi \\cdot \\frac{{{k}}}{{{m}}}",
             f"{k}\\pi" if m == 1 else f"{k}/{m}\\pi"]
    if deg.denominator == 1:
        forms += [f"{deg}^\\circ", f"{deg}°", f"{deg}"]
    return forms


def _interval_forms(lo: int, hi: int, left: str, right: str) -> list[str]:
    return [f"{left}{lo}, {hi}{right}", f"{left}{lo},{hi}{right}", f"\\left{left}{lo}, {hi}\\right{right}",
            f"{left}{lo}, {hi}.0{right}", f"{left}{hi}, {lo}{right}", f"{left}{lo}.5, {hi}{right}",
            f"{left}{lo} , {hi}{right}", f"x \\in {left}{lo}, {hi}{right}",
            f"{left}\\frac{{{2 * lo}}}{{2}}, {hi}{right}"]


def _set_forms(values: list[int]) -> list[str]:
    inside = ", ".join(map(str, values))
    rev = ", ".join(map(str, reversed(values)))
    return [f"\\{{{inside}\\}}", f"\\{{{rev}\\}}", f"\\{{{inside.replace(' ', '')}\\}}", inside, f"({inside})",
            f"\\{{{inside}, {values[0]}\\}}", f"\\{{{values[0]}\\}}", f"x = {inside}",
            f"{inside.replace(', ', ' and ')}",
            f"\\left\\{{{inside}\\right\\}}", f"[{inside}]"]


def _poly_forms(a: int, b: int, var: str) -> list[str]:
    return [f"{a}{var} + {b}", f"{b} + {a}{var}", f"{a}{var}+{b}", f"{a} {var} + {b}", f"{a}\\cdot {var} + {b}",
            f"{a}{var} - {b}", f"{b}{var} + {a}", f"{a}{var}^2 + {b}", f"y = {a}{var} + {b}", f"{a}({var} + {b})",
            f"{var}{a} + {b}", f"\\frac{{{2 * a}{var} + {2 * b}}}{{2}}", f"{a}{var}", f"{var}",
            f"({var}+{b})^2", f"{var}^2 + {2 * b}{var} + {b * b}", f"\\sqrt{{{var}^2}}", f"{var}^{{2}}",
            f"\\frac{{{var}}}{{{a}}}", f"{var}/{a}", f"0.5{var}", f"\\frac{{{var}^2-1}}{{{var}-1}}", f"{var}+1"]


WRAPPERS = [
    "{}", "{}", "{}", "${}$", "\\boxed{{{}}}", "The answer is ${}$.", "The answer is {}", "$\\boxed{{{}}}$",
    "\\({}\\)", "**{}**", " {} ", "Answer: {}", "{} .", "so it is ${}$", "\\boxed{{{}}} units", "$$ {} $$",
    "the final answer is ${}$", "\\[{}\\]", "${}$ and ${}$", "{}\n",
]


@st.composite
def _family(draw: Any) -> list[str]:
    """Surface forms of one value and of values near it (gold and predictions are drawn from these)."""
    kind = draw(st.sampled_from(["int", "frac", "surd", "pi", "interval", "set", "poly", "decimal"]))
    if kind == "int":
        n = draw(st.one_of(st.integers(-20, 400), st.integers(-10**7, 10**7)))
        return _int_forms(n) + _int_forms(n + draw(st.sampled_from([1, -1, 10, 1000]))) + _int_forms(-n)[:6]
    if kind == "frac":
        p = draw(st.integers(-40, 40).filter(lambda v: v != 0))
        q = draw(st.integers(2, 13))
        other = draw(st.integers(2, 13))
        return _fraction_forms(p, q) + _fraction_forms(p + 1, q)[:8] + _fraction_forms(p, other)[:8]
    if kind == "decimal":
        whole = draw(st.integers(0, 2000))
        frac_digits = draw(st.integers(1, 99))
        text = f"{whole}.{frac_digits:02d}"
        value = Fraction(text)
        return [text, text.replace(".", ","), f"{whole},{frac_digits}", f"{text}0", f"{value * 100}\\%"
                if (value * 100).denominator == 1 else text, f"{text} m", f"{text}\\text{{ kg}}", f"{float(value):.1e}",
                f"{float(value) / 1000}\\times10^{{3}}", f"{whole:,}.{frac_digits:02d}", f"{whole}.{frac_digits:02d}1",
                _decimal_text(value + Fraction(1, 10**6), 6), f"\\frac{{{value.numerator}}}{{{value.denominator}}}",
                f"{whole} {frac_digits:02d}", f"{whole}{frac_digits:02d}"]
    if kind == "surd":
        a = draw(st.integers(1, 9))
        b = draw(st.sampled_from([2, 3, 5, 6, 7, 10, 11]))
        return _surd_forms(a, b) + _surd_forms(a + 1, b)[:6] + _surd_forms(a, b + 1)[:4]
    if kind == "pi":
        k = draw(st.integers(1, 12))
        m = draw(st.sampled_from([1, 2, 3, 4, 6, 12]))
        return _pi_forms(k, m) + _pi_forms(k + 1, m)[:5]
    if kind == "interval":
        lo = draw(st.integers(-9, 5))
        hi = lo + draw(st.integers(1, 9))
        left, right = draw(st.sampled_from(["[", "("])), draw(st.sampled_from(["]", ")"]))
        return _interval_forms(lo, hi, left, right) + _interval_forms(lo, hi, "[" if left == "(" else "(", right)[:4]
    if kind == "set":
        values = draw(st.lists(st.integers(-20, 20), min_size=1, max_size=3, unique=True))
        near = [v + 1 for v in values]
        return _set_forms(values) + _set_forms(near)[:4]
    a = draw(st.integers(1, 9))
    b = draw(st.integers(1, 9))
    var = draw(st.sampled_from(["x", "y", "n", "t", "s", "m", "a", "b", "c", "k", "e", "i"]))
    return _poly_forms(a, b, var) + _poly_forms(a, b + 1, var)[:6]


@st.composite
def golds_and_predictions(draw: Any) -> tuple[list[str], list[str]]:
    """A few golds and a dozen predictions from one family: every (gold, prediction) pair is compared."""
    forms = draw(_family())
    pick = st.sampled_from(forms)
    wrap = st.sampled_from(WRAPPERS)
    golds = [forms[0]] + [draw(pick).strip() for _ in range(GOLDS_PER_EXAMPLE - 1)]
    preds = [draw(wrap).format(draw(pick), draw(pick)) for _ in range(PREDS_PER_EXAMPLE)]
    return golds, preds


# ---------------------------------------------------------------------------------------------------
# The differential test
# ---------------------------------------------------------------------------------------------------


class _Raw:
    """Raw math-verify on prepared texts, in the main thread with its own timeouts, parses cached."""

    def __init__(self) -> None:
        from math_verify import parse, verify

        self.parse, self.verify = parse, verify
        self.parsed: dict[str, Any] = {}

    def __call__(self, gold: str, pred: str) -> bool:
        for text in (gold, pred):
            if text not in self.parsed:
                self.parsed[text] = self.parse(prepare(text), parsing_timeout=5)
        return bool(self.verify(self.parsed[gold], self.parsed[pred], timeout_seconds=5))


def test_fast_path_never_disagrees_with_raw_math_verify() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    raw = _Raw()
    counts: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @seed(SEED)
    @given(golds_and_predictions())
    def check(case: tuple[list[str], list[str]]) -> None:
        golds, preds = case
        pred_analyses = [(pred, analyze(pred)) for pred in preds]
        for gold in golds:
            gold_analysis = analyze(gold)
            for pred, pred_analysis in pred_analyses:
                counts["pairs"] += 1
                fast = fast_verdict(gold_analysis, pred_analysis)
                if fast is None:
                    continue
                counts["decided_true" if fast else "decided_false"] += 1
                expected = raw(gold, pred)
                assert fast == expected, (
                    f"fast path says {fast}, raw math-verify says {expected} for gold={gold!r} pred={pred!r}; "
                    f"reproduce with THINKFLOW_FUZZ_SEED={SEED}"
                )

    check()
    decided = counts["decided_true"] + counts["decided_false"]
    print(f"fuzz seed={SEED}: {counts['pairs']} pairs, {decided} decided by the fast path "
          f"({counts['decided_true']} equivalent, {counts['decided_false']} not), 0 disagreements")
    assert counts["pairs"] >= min(MIN_PAIRS, EXAMPLES * GOLDS_PER_EXAMPLE * PREDS_PER_EXAMPLE)
    assert counts["decided_true"] > 0 and counts["decided_false"] > 0  # the fast path is exercised both ways
