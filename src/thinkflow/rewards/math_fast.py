"""The math verifier's fast path: math-verify's verdict without sympy, for the pairs where it is certain.

Conservative by construction: ``analyze`` decides a side only when it is in a shape whose extraction by
math-verify it mirrors (bare LaTeX, ``$…$``, ``\\boxed{…}``, one ``$…$`` in a short sentence: rules E1–E4),
normalized by math-verify's own ``normalize_latex`` with math-verify's config (rule N1); ``fast_verdict`` then
decides when the normalized strings are equal (math-verify's string comparison, V1) or the LaTeX is in a small
grammar that latex2sympy reads one way (integers, decimals, ``\\frac``, ``\\sqrt``, ``\\pi``, powers, polynomials
in single-letter variables, one ``x =``, ``^\\circ``, sets and intervals of exact numbers: G1–G6, the arithmetic
in `thinkflow.rewards.math_grammar`) and the verdict of math-verify's grader is clear (V2–V5). Each rule names
the math-verify 0.9.0 function it mirrors. Everything else (commas outside sets and intervals, thousands
separators, decimal commas, spaces inside numbers, units the normalizer keeps, percents, scientific notation,
mixed numbers, text, ``°``, decimals inside expressions, rounding ties…) is left to math-verify (``None``).
``tests/unit/test_rewards_math_fuzz.py`` checks the fast verdicts against raw math-verify.

``prepare`` is how any text is handed to math-verify (bare LaTeX wrapped in ``$…$``).
"""

from __future__ import annotations

import importlib.util
import math as _m
import re
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from thinkflow.rewards.math_grammar import ENVS, Expr, Unsupported, Value, check_value

_MAX_FAST_CHARS = 120

# ---------------------------------------------------------------------------------------------------
# Preparing text for math-verify
# ---------------------------------------------------------------------------------------------------

_DELIMITED = ("$", "\\(", "\\[", "\\boxed", "\\fbox")
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
# A plain number with a separator, as math-verify's expression extraction reads it (``lazy_expr_regex``,
# math_verify/parser.py 173–185, and ``extract_expr``, 424–436): thousands "1,000" / "1 000" and decimal
# commas "1,22" (= 1.22) and "1000,99" (= 1000.99). Wrapped in ``$…$`` LaTeX would read "1,22" as a set {1, 22}.
_SEPARATED_NUMBER = re.compile(r"-?(?:[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?|\d+,\d+)")


def prepare(text: str) -> str:
    """Text ready for ``math_verify.parse``: bare LaTeX wrapped in ``$…$``, prose and delimited text as is.

    ``\\frac{\\sqrt{3}}{3}`` becomes ``$\\frac{\\sqrt{3}}{3}$``; ``The area is $12$`` and ``The area is 12``
    (two or more words outside LaTeX commands) are left for math-verify's own extraction, and so are plain
    numbers with a thousands separator or a decimal comma (``1,000``, ``1 000``, ``1,22`` = 1.22), which
    math-verify reads as numbers only outside LaTeX.
    """
    s = text.strip()
    if any(d in s for d in _DELIMITED):
        return s
    if _SEPARATED_NUMBER.fullmatch(s):
        return s
    if len(_PROSE_WORD.findall(s, 0, 2000)) >= 2:
        return s
    return f"${s}$"


@dataclass(frozen=True)
class Analysis:
    """What the fast paths need to know about one side (gold or answer).

    ``key`` is ``None`` when the side is not in a shape whose extraction by math-verify the fast path mirrors
    (then nothing is decided for it); otherwise it is the normalized LaTeX math-verify extracts, which is
    also its string fallback. The other fields are set only when that LaTeX is in the ``Expr`` grammar.
    """

    key: str | None  # math-verify's normalized LaTeX (rules E1–E4, N1), or None: defer
    value: Value | None = None  # numeric value (at the first assignment when there are variables)
    value2: float | None = None  # value at the second assignment (only with variables)
    variables: frozenset[str] = frozenset()
    bare_symbol: bool = False  # a lone variable: math-verify compares symbols by name
    assignment: bool = False  # written as "x = …"
    interval: tuple[str, Fraction, Fraction, str] | None = None  # "[a, b)" with exact ends, a < b
    decimals: int | None = None  # decimal places when the side is a plain decimal (a sympy Float)
    elements: frozenset[Fraction] | None = None  # "\\{1, -2\\}": a finite set of exact numbers


_ERRORS = (Unsupported, ValueError, ZeroDivisionError, OverflowError, ArithmeticError, RecursionError)

# --- Rules E1–E4: which text math-verify extracts (math_verify/parser.py 0.9.0) --------------------------
# The fast path only decides a side whose extraction it knows: the whole text is one of
#   E1 bare LaTeX that ``prepare`` wraps in ``$…$``; E2 ``$core$``; E3 ``\boxed{core}``;
#   E4 a short sentence of words around one ``$core$`` (``The answer is $12$.``).
# In each, ``extract_target_from_pred`` (parser.py 573–646) tries first, in its priority group, the one LaTeX
# environment spanning the whole formula (``make_latex_env_pattern``, 240–298: the match that ends last and
# starts first; the number/expression regexes of ``lazy_expr_regex``, 170–237, end inside it or at its end,
# later-starting), or for E3 the boxed pattern of ``lazy_latex_regex`` (339–354); ``extract_latex`` (464–540)
# then normalizes the group with ``normalize_latex`` (rule N1) and its string becomes ``parse``'s fallback
# (``fallback_mode="first_match"``, 643–644). The guards below keep anything that could start another match
# (another ``$``, ``\(``, ``\[``, ``\boxed``, a newline, digits or ``%`` in the words) out. In a sentence the
# ``answer … = number`` regexes of ``lazy_expr_regex`` (225–230) end inside the formula, or at its end tied with
# it, and then sort after it (a stable sort; LaTeX patterns are listed first).
_CORE_FORBIDDEN = re.compile(r"\$|\\[()\[\]]|\\boxed|\\fbox|\n|\\\\|\\$|%|\\%|percent|pct")
_SENTENCE_SHAPE = re.compile(r"([A-Za-z][A-Za-z ,:']*\s)\$([^$\n]+)\$\.?")
_BOXED_SHAPE = re.compile(r"\\boxed\{(.*)\}", re.DOTALL)


def _extracted(text: str) -> str | None:
    """Rules E1–E4: the LaTeX group math-verify's ``parse(prepare(text))`` normalizes first, or ``None``."""
    s = text.strip()
    if not s or len(s) > _MAX_FAST_CHARS:
        return None
    if prepare(s) == f"${s}$":  # E1: parse sees "$s$" and extracts s
        core = s
    elif s.startswith("$") and s.endswith("$") and s.count("$") == 2 and len(s) > 2:  # E2
        core = s[1:-1]
    elif (boxed := _BOXED_SHAPE.fullmatch(s)) is not None:  # E3: extract_boxed_content(…, "last") strips it
        core = boxed.group(1)
        if _closing_brace_at_end(s) is False:
            return None
        core = core.strip()
    elif (sentence := _SENTENCE_SHAPE.fullmatch(s)) is not None:  # E4
        core = sentence.group(2)
        if re.search(r"final answer|\band\b|\bor\b", sentence.group(1), re.IGNORECASE):
            return None
    else:
        return None
    if not core.strip() or _CORE_FORBIDDEN.search(core):
        return None
    return core


def _closing_brace_at_end(s: str) -> bool:
    """``\\boxed{…}`` whose brace closes at the end of the text (not ``\\boxed{1}+\\boxed{2}``)."""
    depth = 0
    for i, ch in enumerate(s):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


# --- Rule N1: math-verify's normalization, by math-verify's own function ---------------------------------
# ``extract_latex`` (parser.py 510–513) calls latex2sympy2_extended's ``normalize_latex`` with
# ``LatexExtractionConfig().normalization_config`` (parser.py 73–82: basic_latex, units, malformed_operators,
# nits, boxed="all"). The fast path calls that same function with that same config, so "0.5" → "\\frac{1}{2}",
# "\\dfrac" → "\\frac", "2/4" → "\\frac{2}{4}" … are math-verify's by construction. Where the units step
# removed something ("5 m" → "5", "2t" → "2": t is on its list of units) only rule V1 applies.
# Its module is loaded on its own (plain ``re``): importing the package would import sympy into the caller.
_NORMALIZE: Any = None
# The units step (``units_regex``, ``unit_superscript_regex`` in latex2sympy2_extended's math_normalization)
# removes a unit word at the very end (every unit ends with a letter, ".", "³", "™" or "cm 2"/"π r 2") or a
# trailing \\text{…}/\\mbox{…}; text that cannot end so is normalized once, the rest also without units.
_PLAIN_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?")
_MAYBE_UNIT = re.compile(r"(?:[A-Za-z.³™]|(?:cm|r)\s*2)[\s\\!'\"]*$|\\text|\\mbox|\\math")


def _normalizer() -> Any:
    global _NORMALIZE
    if _NORMALIZE is None:
        module = sys.modules.get("latex2sympy2_extended.math_normalization")
        if module is None:
            spec = importlib.util.find_spec("latex2sympy2_extended")
            if spec is None or not spec.submodule_search_locations:
                raise RuntimeError("latex2sympy2_extended (a math-verify dependency) is not installed")
            path = Path(next(iter(spec.submodule_search_locations))) / "math_normalization.py"
            loader_spec = importlib.util.spec_from_file_location("_thinkflow_math_normalization", path)
            if loader_spec is None or loader_spec.loader is None:
                raise RuntimeError(f"cannot load {path}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        config = module.NormalizationConfig(
            basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="all", equations=False
        )
        no_units = module.NormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        )

        def normalize(latex: str) -> tuple[str, bool]:
            if _PLAIN_NUMBER.fullmatch(latex) and latex != "0.5":
                return latex, False  # every step of normalize_latex leaves these as they are ("0.5": nits)
            text = module.normalize_latex(latex, config=config)
            if not _MAYBE_UNIT.search(latex):
                return text, False
            return text, text != module.normalize_latex(latex, config=no_units)

        _NORMALIZE = normalize
    return _NORMALIZE


# --- Rules G1–G6: how latex2sympy reads the normalized LaTeX (only forms read one way) -----------------------
# G1 integers, decimals (sympy Float: ``decimals`` set), \\frac, \\sqrt, \\pi, ^, \\cdot, \\times, /, \\div,
#    implicit products before \\sqrt/\\pi/a variable (``Expr``; ambiguous juxtapositions raise Unsupported);
# G2 a decimal only alone (``-1.5``): inside an expression sympy's Float arithmetic decides;
# G3 single-letter variables (not e, i, j: E and the imaginary unit) only in polynomials: never under
#    \\sqrt, in a denominator or an exponent (sympy's real-symbol simplification decides those);
# G4 one leading ``x =`` (an assignment, ``is_assignment_relation`` in grader.py 540–559);
# G5 a trailing degree on a plain number (``60^\\circ``, ``60^{\\circ}`` read as 60 with ``convert_degrees=False``,
#    parser.py 380–385); not ``60°``: latex2sympy cannot read it and the other extractions then decide;
# G6 ``\\{a, b\\}`` finite sets and ``[a, b)`` intervals (a < b) of exact numbers, elements split at commas.
_ASSIGN = re.compile(r"^([A-Za-z])\s*=\s*(?!=)")
_DEGREE = re.compile(r"^(-?\d+(?:\.\d+)?)(?:\^\\circ|\^\{\\circ\})$")
_INTERVAL = re.compile(r"([\[(])([^,\[\]()]+),([^,\[\]()]+)([\])])")


def _numeric(text: str) -> Value:
    """The value of a variable-free numeral without decimals (G1, G2); raises otherwise."""
    expr = Expr(text)
    value = check_value(expr.parse())
    if expr.decimals:
        raise Unsupported  # a Float element: sympy's Float comparisons decide
    return value


def _interval(text: str) -> tuple[str, Fraction, Fraction, str] | None:
    match = _INTERVAL.fullmatch(text)
    if match is None:
        return None
    left, a, b, right = match.groups()
    try:
        lo, hi = _numeric(a.strip()), _numeric(b.strip())
    except _ERRORS:
        return None
    if not isinstance(lo, Fraction) or not isinstance(hi, Fraction) or not lo < hi:
        return None  # "(2, 1)" is a Tuple, "[1, 1]" a set
    return (left, lo, hi, right)


def _finite_set(text: str) -> frozenset[Fraction] | None:
    if not (text.startswith("\\{") and text.endswith("\\}")):
        return None
    values = []
    for part in text[2:-2].split(","):
        try:
            value = _numeric(part.strip())
        except _ERRORS:
            return None
        if not isinstance(value, Fraction):
            return None
        values.append(value)
    return frozenset(values)


def analyze(text: str) -> Analysis:
    """Analyse one side for the fast paths (never raises); see rules E1–E4, N1, G1–G6."""
    core = _extracted(text)
    if core is None:
        return Analysis(None)
    try:
        s, unit_removed = _normalizer()(core)
    except Exception:  # whatever the normalizer does, the fast path then decides nothing
        return Analysis(None)
    if not s:
        return Analysis(None)
    if unit_removed:
        return Analysis(s)  # "5 m", "2t" (t is a unit to math-verify): only rule V1, the rest is math-verify's
    if "," in s and not s.startswith(("\\{", "[", "(")):
        return Analysis(s)  # commas outside a set or an interval: thousands, decimal commas, tuples
    assignment = False
    body = s
    match = _ASSIGN.match(body)
    if match:
        assignment = True
        body = body[match.end() :]
    degree = _DEGREE.fullmatch(body)
    if degree:
        body = degree.group(1)
    if not assignment:
        elements = _finite_set(body)
        if elements is not None:
            return Analysis(s, elements=elements)
        interval = _interval(body)
        if interval is not None:
            return Analysis(s, interval=interval)
    if "," in body:
        return Analysis(s, assignment=assignment)
    try:
        first = Expr(body, ENVS[0])
        value = check_value(first.parse())
        plain_decimal = len(first.tokens) <= 2 and first.tokens[-1][0] == "num" and "." in first.tokens[-1][1]
        if first.decimals and not plain_decimal:
            return Analysis(s, assignment=assignment)  # G2
        if not first.variables:
            places = len(first.tokens[-1][1].split(".")[1]) if plain_decimal else None
            return Analysis(s, value, assignment=assignment, decimals=places)
        second = Expr(body, ENVS[1])
        value2 = float(check_value(second.parse()))
        bare = len(first.tokens) == 1
        return Analysis(s, float(value), value2, frozenset(first.variables), bare, assignment)
    except _ERRORS:
        return Analysis(s, assignment=assignment)


def _close(a: Value, b: Value) -> bool:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(a)), abs(float(b)))


def _apart(a: Value, b: Value) -> bool:
    diff = abs(float(a) - float(b))
    return diff > 1e-5 and diff > 1e-9 * max(abs(float(a)), abs(float(b)))


def _integral(value: Value) -> bool:
    if isinstance(value, Fraction):
        return value.denominator == 1
    return abs(value - round(value)) < 1e-9


def _rounded6(value: Value) -> int | None:
    """``round(value, 6)`` as an integer count of millionths, or ``None`` near a rounding tie or when large."""
    if abs(float(value)) >= 1e6:
        return None
    scaled = value * 1_000_000
    floor = _m.floor(scaled)
    if abs(float(scaled - floor) - 0.5) < 1e-6:
        return None  # a tie (within float error): sympy's rounding of its binary Float decides
    return floor + 1 if scaled - floor > 0.5 else floor


def fast_verdict(gold: Analysis, pred: Analysis) -> bool | None:
    """True/False when the fast paths are sure of math-verify's verdict, ``None`` when it must decide.

    Rules V1–V5 mirror ``math_verify.grader`` 0.9.0:
    V1 equal normalized LaTeX: ``verify`` compares the two string fallbacks (grader.py 842–848) → True;
    V2 finite sets: equal sets of exact numbers (``sympy_compare_sets``, 389–453) → that verdict;
    V3 intervals: brackets and exact ends (``sympy_compare_interval``, 265–283);
    V4 a plain decimal (sympy Float) on either side: both rounded to 6 places (``sympy_numeric_eq``,
       160–168; ties and large values defer), except against an integer, where ``Integer.round`` never equals
       a Float and only ``simplify`` (``sympy_symbolic_eq``, 186–205) can succeed: exactly equal → True;
    V5 exact values: equal (``sympy_str_eq``/``evalf``/``simplify``, 177–205, 693–716) → True, clearly apart → False;
       with variables, two evaluation points; an assignment on one side only is unwrapped (651–675).
    """
    if gold.key is None or pred.key is None:
        return None
    if gold.key == pred.key:
        return True  # V1
    if gold.elements is not None and pred.elements is not None:
        return gold.elements == pred.elements  # V2
    if gold.interval is not None and pred.interval is not None:  # V3
        (gl, ga, gb, gr), (pl, pa, pb, pr) = gold.interval, pred.interval
        return (gl, gr) == (pl, pr) and ga == pa and gb == pb
    if gold.value is None or pred.value is None or (gold.assignment and pred.assignment):
        return None
    if gold.decimals is not None or pred.decimals is not None:  # V4
        if gold.variables or pred.variables:
            return None
        if _apart(gold.value, pred.value):
            return False
        for exact, other in ((gold, pred), (pred, gold)):
            if exact.decimals is None and exact.value is not None and _integral(exact.value):
                # sympy Integer vs Float: Integer.round(6) never equals a Float; simplify(a - b) decides,
                # so only an exactly equal value is equivalent. An irrational that is nearly an integer
                # (sqrt(2)*sqrt(2) evaluates to the Integer 2 in sympy) defers.
                if not isinstance(exact.value, Fraction):
                    return None
                return exact.value == other.value
        a, b = _rounded6(gold.value), _rounded6(pred.value)
        return None if a is None or b is None else a == b
    if gold.variables or pred.variables:  # V5 with variables
        if gold.bare_symbol or pred.bare_symbol:
            return None
        gold2 = gold.value2 if gold.variables else gold.value
        pred2 = pred.value2 if pred.variables else pred.value
        if gold2 is None or pred2 is None:
            return None
        pairs = ((gold.value, pred.value), (gold2, pred2))
        if gold.variables == pred.variables and all(
            abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a))) for a, b in pairs
        ):
            return True
        if any(abs(float(a) - float(b)) > 1e-6 * max(1.0, abs(float(a)), abs(float(b))) for a, b in pairs):
            return False
        return None
    if _close(gold.value, pred.value):  # V5
        return True
    if _apart(gold.value, pred.value):
        return False
    return None
