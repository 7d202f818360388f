"""``math``: math-verify equivalence (``parse``/``verify``, gold first), fast and bounded in time.

Semantics are math-verify's: ``verify(parse(gold), parse(answer))``, with bare LaTeX wrapped in ``$…$``
first (``parse(r"\\frac{\\sqrt{3}}{3}")`` alone returns nothing), so equivalent forms score 1: ``0.5`` =
``\\frac{1}{2}`` = ``\\frac{2}{4}`` = ``x = \\frac12``; ``\\sqrt{18}`` = ``3\\sqrt{2}``; ``60^\\circ`` = ``60``.

How it is fast (see ``bench/rewards.py``):

1. fast path, conservative by construction: it decides a pair only when both sides are in a shape whose
   extraction by math-verify it mirrors (bare LaTeX, ``$…$``, ``\\boxed{…}``, one ``$…$`` in a short
   sentence: rules E1–E4), normalized by math-verify's own ``normalize_latex`` with math-verify's config
   (rule N1), and then either the normalized strings are equal (math-verify's string comparison, V1) or the
   LaTeX is in a small grammar that latex2sympy reads one way (integers, decimals, ``\\frac``, ``\\sqrt``,
   ``\\pi``, powers, polynomials in single-letter variables, one ``x =``, ``^\\circ``, sets and intervals
   of exact numbers: G1–G6) and the verdict of math-verify's grader is clear (V2–V5). Each rule names the
   math-verify 0.9.0 function it mirrors. Everything else (commas outside sets and intervals, thousands
   separators, decimal commas, spaces inside numbers, units the normalizer keeps, percents, scientific
   notation, mixed numbers, text, ``°``, decimals inside expressions, rounding ties…) goes to math-verify.
   ``tests/unit/test_rewards_math_fuzz.py`` checks the fast verdicts against raw math-verify;
2. verdict cache: ``(gold, answer)`` pairs already judged (GRPO groups repeat answers);
3. math-verify in worker processes (``MathPool``) with the gold parsed once per worker, large batches
   spread over the workers.

How it is bounded in time: sympy never runs in the caller's process. Each item gets ``timeout_s`` in a
worker (a ``setitimer`` signal in the worker's main thread); an item the signal cannot stop (C-level big
integers such as ``10^{10^{10}}``) gets the worker killed and replaced after ``timeout_s + grace_s``. So a
call is bounded from the main thread, from worker threads (TRL, HTTP servers) and from processes alike.
Answers longer than ``max_answer_chars`` score 0 without parsing.

No departure from raw math-verify: a gold that math-verify cannot parse scores 0 for every answer (data
validation reports such golds, see ``check_math_solution``); plain numbers with a thousands separator or a
decimal comma (``1,000``, ``1,22``) are left unwrapped by ``prepare`` so math-verify reads them as numbers.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import math as _m
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from thinkflow.format import solution_text

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("_mathworker.py")
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_MAX_ANSWER_CHARS = 1000

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


# ---------------------------------------------------------------------------------------------------
# Fast paths
# ---------------------------------------------------------------------------------------------------

Value = Fraction | float
_MAX_FAST_CHARS = 120
_MAX_MAGNITUDE = 1e12
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<cmd>\\[A-Za-z]+)|(?P<var>[a-z])|(?P<op>[-+*/^(){}])|(?P<other>\S))"
)
# Single-letter variables the evaluator accepts: not e (Euler's number for latex2sympy), i/j (imaginary units).
_VARIABLES = frozenset("abcdfghklmnpqrstuvwxyz")
# Values substituted for variables: two assignments of unremarkable irrationals.
_ENVS = (
    {v: 0.5772156649015329 + 0.1031 * k for k, v in enumerate(sorted(_VARIABLES))},
    {v: 1.2020569031595942 + 0.3719 * k for k, v in enumerate(sorted(_VARIABLES))},
)
_SENTENCE = re.compile(r"[A-Za-z ,.:;'!?-]*\$([^$]+)\$[A-Za-z ,.:;'!?-]*")
_INTERVAL = re.compile(r"([\[(])([^,\[\]()]+),([^,\[\]()]+)([\])])")
_ASSIGN = re.compile(r"^([A-Za-z])\s*=\s*(?!=)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+")
_DEGREE = re.compile(r"(?:\^\s*\{?\s*\\circ\s*\}?|°)$")
_MULT_CMDS = {"\\cdot", "\\times"}
_FRAC_CMDS = {"\\frac", "\\dfrac", "\\tfrac"}


class _Unsupported(Exception):
    """Not in the fast path's grammar: let math-verify decide."""


class _Expr:
    """A recursive-descent evaluator for a small, unambiguous subset of LaTeX numerals.

    Grammar: ``expr := [+-] term (('+'|'-') term)*``; ``term := power ((\\cdot|\\times|*|/|\\div)? power)*``
    where implicit multiplication is allowed only before ``\\sqrt``/``\\pi``/a variable, and nothing follows a
    ``/`` in a term (latex2sympy reads ``3/2\\pi`` as 3/(2π)); no variable under ``\\sqrt`` or in a denominator;
    ``power := atom ['^' (digit | '{' expr '}')]``;
    ``atom := number | variable | \\frac{expr}{expr} | \\frac DD | \\sqrt{expr} | \\sqrt D | \\pi | (expr) | {expr}``.
    Variables (single lower-case letters but ``e``, ``i``, ``j``) take the values in ``env``. Mixed numbers
    (``1\\frac12``), juxtaposed numbers (``2 3``), leading zeros, ``2(3)``, ``x(…)`` (a function call?), ``x2``,
    decimals inside expressions (math-verify then compares with sympy's float semantics) and anything else raise
    ``_Unsupported``.
    """

    def __init__(self, text: str, env: dict[str, float] | None = None):
        self.env = env or {}
        self.variables: set[str] = set()
        self.var_uses = 0
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                if text[pos:].strip():
                    raise _Unsupported
                break
            pos = match.end()
            kind = match.lastgroup or "other"
            value = match.group(kind)
            if kind == "cmd" and value in ("\\div",):
                kind, value = "op", "/"
            if kind == "cmd" and value in _MULT_CMDS:
                kind, value = "op", "*"
            if kind == "other":
                raise _Unsupported
            self.tokens.append((kind, value))
        self.i = 0
        self.decimals = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise _Unsupported
        self.i += 1
        return tok

    def parse(self) -> Value:
        value = self.expr()
        if self.peek() is not None:
            raise _Unsupported
        return value

    def expr(self) -> Value:
        sign = 1
        tok = self.peek()
        if tok is not None and tok[1] in "+-" and tok[0] == "op":
            self.take()
            sign = -1 if tok[1] == "-" else 1
        value = _mul(sign, self.term())
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in "+-":
            self.take()
            right = self.term()
            value = value + right if tok[1] == "+" else value - right
        return value

    def term(self) -> Value:
        value = self.power()
        divided = False
        while (tok := self.peek()) is not None:
            if divided and (tok[0] in ("cmd", "var") or tok[1] in "*/"):
                raise _Unsupported  # "3/2\pi" is 3/(2π) for latex2sympy: only a last "/" is unambiguous
            if tok[0] == "op" and tok[1] in "*/":
                divided = tok[1] == "/"
                self.take()
                right = self.power() if tok[1] == "*" else self.constant(self.power)
                value = value * right if tok[1] == "*" else _div(value, right)
            elif (tok[0] == "cmd" and tok[1] in ("\\sqrt", "\\pi")) or tok[0] == "var":
                value = _mul(value, self.power())
            else:
                break
        return value

    def power(self) -> Value:
        base = self.atom()
        tok = self.peek()
        if tok is not None and tok[1] == "^":
            self.take()
            nxt = self.peek()
            if nxt is not None and nxt[0] == "num" and len(nxt[1]) == 1:
                self.take()
                exponent: Value = Fraction(int(nxt[1]))
            else:
                self.take("{")
                exponent = self.expr()
                self.take("}")
            if self.peek() is not None and self.peek() == ("op", "^"):
                raise _Unsupported  # a^b^c: associativity differs between readers
            return _pow(base, exponent)
        return base

    def constant(self, parse: Any) -> Value:
        """``parse()`` where a variable is not allowed (G3: denominators, square roots)."""
        before = self.var_uses
        value: Value = parse()
        if self.var_uses != before:
            raise _Unsupported
        return value

    def group(self) -> Value:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def digit_arg(self) -> Value:
        """``\\frac12`` / ``\\sqrt2``: single-digit arguments without braces."""
        tok = self.take()
        if tok[0] != "num" or not tok[1].isdigit():
            raise _Unsupported
        return Fraction(int(tok[1]))

    def atom(self) -> Value:
        kind, value = self.take()
        if kind == "num":
            if len(value) > 1 and value[0] == "0" and value[1].isdigit():
                raise _Unsupported  # "007": leading zeros
            if "." in value:
                self.decimals += 1
            nxt = self.peek()
            if nxt is not None and (nxt[0] == "num" or nxt[1] in ("(", "{") or nxt[1] in _FRAC_CMDS):
                raise _Unsupported  # "2 3", "2(3)", "1\frac12": math-verify reads these in surprising ways
            return Fraction(value)
        if kind == "var":
            nxt = self.peek()
            if value not in _VARIABLES or value not in self.env:
                raise _Unsupported
            if nxt is not None and (nxt[0] in ("num", "var") or nxt[1] in ("(", "{")):
                raise _Unsupported  # "x2" (a subscript?), "f(x)" (a function?), "ab" (math-verify reads oddly)
            self.variables.add(value)
            self.var_uses += 1
            return self.env[value]
        if kind == "cmd" and value in _FRAC_CMDS:
            if self.peek() == ("op", "{"):
                num = self.group()
                den = self.constant(self.group)
            else:
                tok = self.peek()
                if tok is None or tok[0] != "num" or len(tok[1]) != 2 or not tok[1].isdigit():
                    raise _Unsupported
                self.take()
                num, den = Fraction(int(tok[1][0])), Fraction(int(tok[1][1]))
            return _div(num, den)
        if kind == "cmd" and value == "\\sqrt":
            arg = self.constant(self.group) if self.peek() == ("op", "{") else self.digit_arg()
            return _sqrt(arg)
        if kind == "cmd" and value == "\\pi":
            return _m.pi
        if kind == "op" and value == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if kind == "op" and value == "{":
            inner = self.expr()
            self.take("}")
            return inner
        raise _Unsupported


def _check(value: Value) -> Value:
    if isinstance(value, float) and not _m.isfinite(value):
        raise _Unsupported
    if abs(float(value)) > _MAX_MAGNITUDE:
        raise _Unsupported
    return value


def _mul(a: Value, b: Value) -> Value:
    return _check(a * b)


def _div(a: Value, b: Value) -> Value:
    if b == 0:
        raise _Unsupported
    return _check(a / b)


def _pow(base: Value, exponent: Value) -> Value:
    if not isinstance(exponent, Fraction) or exponent.denominator != 1 or abs(exponent) > 64:
        raise _Unsupported
    if base == 0 and exponent < 0:
        raise _Unsupported
    if isinstance(base, Fraction) and (abs(base.numerator) > 10**6 or abs(base.denominator) > 10**6):
        raise _Unsupported
    return _check(base ** int(exponent))


def _sqrt(arg: Value) -> Value:
    if float(arg) < 0:
        raise _Unsupported
    if isinstance(arg, Fraction):
        num, den = _m.isqrt(arg.numerator), _m.isqrt(arg.denominator)
        if num * num == arg.numerator and den * den == arg.denominator:
            return Fraction(num, den)
    return _check(_m.sqrt(float(arg)))


@dataclass(frozen=True)
class Analysis:
    """What the fast paths need to know about one side (gold or answer).

    ``key`` is ``None`` when the side is not in a shape whose extraction by math-verify the fast path mirrors
    (then nothing is decided for it); otherwise it is the normalized LaTeX math-verify extracts, which is
    also its string fallback. The other fields are set only when that LaTeX is in the ``_Expr`` grammar.
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


_ERRORS = (_Unsupported, ValueError, ZeroDivisionError, OverflowError, ArithmeticError, RecursionError)

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
#    implicit products before \\sqrt/\\pi/a variable (``_Expr``; ambiguous juxtapositions raise _Unsupported);
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
    expr = _Expr(text)
    value = _check(expr.parse())
    if expr.decimals:
        raise _Unsupported  # a Float element: sympy's Float comparisons decide
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
        first = _Expr(body, _ENVS[0])
        value = _check(first.parse())
        plain_decimal = len(first.tokens) <= 2 and first.tokens[-1][0] == "num" and "." in first.tokens[-1][1]
        if first.decimals and not plain_decimal:
            return Analysis(s, assignment=assignment)  # G2
        if not first.variables:
            places = len(first.tokens[-1][1].split(".")[1]) if plain_decimal else None
            return Analysis(s, value, assignment=assignment, decimals=places)
        second = _Expr(body, _ENVS[1])
        value2 = float(_check(second.parse()))
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


# ---------------------------------------------------------------------------------------------------
# The worker pool
# ---------------------------------------------------------------------------------------------------


class _Worker:
    """One worker process and the parent's view of it."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-P", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""
        self.ready = False
        self.started = time.monotonic()

    def send(self, request: dict[str, Any]) -> bool:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def read_lines(self) -> list[dict[str, Any]] | None:
        """Available complete lines; ``None`` on end of file (the worker died)."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def kill(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


@dataclass
class _Job:
    worker: _Worker
    indices: list[int]  # positions in the caller's item list, in the order sent
    done: int = 0
    deadline: float = 0.0
    sent: bool = False


@dataclass
class PoolStats:
    """Counters of a pool's outcomes since it started."""

    counts: Counter[str] = field(default_factory=Counter)


class MathPool:
    """Persistent math-verify worker processes with per-item deadlines (see the module docstring).

    Thread-safe (one batch at a time). Workers start lazily; ``close`` (also at exit) stops them.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        grace_s: float = 0.5,
        startup_timeout_s: float = 120.0,
        min_chunk: int = 16,
    ) -> None:
        if workers < 1:
            raise ValueError(f"math workers must be >= 1, got {workers}")
        self.size = workers
        self.grace_s = grace_s
        self.startup_timeout_s = startup_timeout_s
        self.min_chunk = min_chunk
        self.workers: list[_Worker] = []
        self.stats = PoolStats()
        self.pid = os.getpid()
        self._lock = threading.Lock()

    def _worker(self, k: int) -> _Worker:
        while len(self.workers) <= k:
            self.workers.append(_Worker())
        return self.workers[k]

    def start(self, n: int | None = None) -> None:
        """Start ``n`` workers (all by default) and wait until they are ready (warmed up)."""
        with self._lock:
            jobs = [_Job(self._worker(k), []) for k in range(min(n or self.size, self.size))]
            self._run(jobs, "judge", [], 1.0, [])

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            for worker in self.workers:
                worker.kill()
            self.workers.clear()

    def run(self, op: str, items: Sequence[Any], timeout_s: float) -> list[tuple[bool, str, str]]:
        """Run ``op`` (``judge`` | ``parse``) on every item; returns ``(verdict, status, detail)`` per item."""
        if not items:
            return []
        if os.getpid() != self.pid:  # forked: the parent's pipes are not ours
            raise RuntimeError("MathPool used after fork; create a new pool in the child")
        with self._lock:
            n_jobs = max(1, min(self.size, len(items) // self.min_chunk))
            bounds = [round(k * len(items) / n_jobs) for k in range(n_jobs + 1)]
            jobs = [_Job(self._worker(k), list(range(bounds[k], bounds[k + 1]))) for k in range(n_jobs)]
            results: list[tuple[bool, str, str] | None] = [None] * len(items)
            self._run(jobs, op, items, timeout_s, results)
            return [r if r is not None else (False, "error", "") for r in results]

    def _replace(self, job: _Job) -> None:
        old = job.worker
        old.kill()
        job.worker = _Worker()
        if old in self.workers:
            self.workers[self.workers.index(old)] = job.worker
        job.sent = False

    def _run(self, jobs: list[_Job], op: str, items: Sequence[Any], timeout_s: float, results: list[Any]) -> None:
        """Drive the jobs until every item has a result (the event loop behind ``run`` and ``start``)."""
        selector = selectors.DefaultSelector()
        active: dict[int, _Job] = {}
        step = timeout_s + self.grace_s

        def activate(job: _Job) -> None:
            """Register a job; dispatch it now if its worker is ready (a dead idle worker is replaced)."""
            if job.worker.proc.poll() is not None:
                self._replace(job)
            if job.worker.ready:
                if job.done >= len(job.indices):
                    return
                request = {"op": op, "items": [items[i] for i in job.indices[job.done :]], "timeout": timeout_s}
                if not job.worker.send(request):
                    self._replace(job)
                else:
                    job.sent = True
                    job.deadline = time.monotonic() + step
            active[job.worker.fd] = job
            selector.register(job.worker.fd, selectors.EVENT_READ, job)

        def retire(job: _Job) -> None:
            selector.unregister(job.worker.fd)
            del active[job.worker.fd]

        def fail(job: _Job, status: str) -> None:
            """A worker died or overran its item: that item scores 0, the rest go to a fresh worker."""
            retire(job)
            self.stats.counts[status] += 1
            if not job.worker.ready:
                # It never started: score its items 0 rather than spawning forever.
                for position in job.indices[job.done :]:
                    results[position] = (False, status, "")
                job.done = len(job.indices)
                self._replace(job)
                log.error("math-verify worker failed to start (%s)", status)
                return
            if job.done < len(job.indices):
                results[job.indices[job.done]] = (False, status, "")
                job.done += 1
            log.warning("math-verify worker %s on an item; replacing it", status)
            self._replace(job)
            if job.done < len(job.indices):
                activate(job)

        for job in jobs:
            activate(job)
        try:
            while active:
                limits = {
                    fd: (job.deadline if job.worker.ready else job.worker.started + self.startup_timeout_s)
                    for fd, job in active.items()
                }
                wait = max(0.0, min(limits.values()) - time.monotonic())
                for key, _ in selector.select(timeout=wait):
                    job = key.data
                    if job.worker.fd not in active:
                        continue
                    lines = job.worker.read_lines()
                    if lines is None:
                        fail(job, "crashed" if job.worker.ready else "startup_failed")
                        continue
                    for reply in lines:
                        if reply.get("ready"):
                            job.worker.ready = True
                            retire(job)
                            activate(job)
                        elif "i" in reply and job.sent and job.done < len(job.indices):
                            status = str(reply.get("s", "error"))
                            results[job.indices[job.done]] = (bool(reply.get("v")), status, str(reply.get("r", "")))
                            self.stats.counts[status] += 1
                            job.done += 1
                            job.deadline = time.monotonic() + step
                    if job.worker.fd in active and job.worker.ready and job.done >= len(job.indices):
                        retire(job)
                now = time.monotonic()
                for fd, job in list(active.items()):
                    limit = job.deadline if job.worker.ready else job.worker.started + self.startup_timeout_s
                    if fd in active and now >= limit:
                        fail(job, "killed" if job.worker.ready else "startup_failed")
        finally:
            selector.close()


_POOLS: dict[int, MathPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(workers: int = 2) -> MathPool:
    """The process-wide pool with ``workers`` workers (one per size; new after a fork)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None or pool.pid != os.getpid():
            pool = MathPool(workers)
            _POOLS[workers] = pool
        return pool


@atexit.register
def _close_pools() -> None:
    for pool in list(_POOLS.values()):
        if pool.pid == os.getpid():
            pool.close()


# ---------------------------------------------------------------------------------------------------
# The verifier
# ---------------------------------------------------------------------------------------------------


class _LRU(OrderedDict[Any, Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def lookup(self, key: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def store(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


class MathVerifier:
    """Scores answers against math golds; see the module docstring for semantics and speed.

    ``stats`` counts how each item was decided: ``exact``, ``numeric``, ``cached``, ``verified``,
    ``too_long``, ``timeout``, ``killed``, ``error``, ``gold_unparsed``, ``no_answer``.
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = 2,
        max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
        cache_size: int = 1 << 16,
        pool: MathPool | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.workers = workers
        self.max_answer_chars = max_answer_chars
        self._pool = pool
        self._verdicts = _LRU(cache_size)
        self._analyses = _LRU(cache_size)
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    @property
    def pool(self) -> MathPool:
        if self._pool is None or self._pool.pid != os.getpid():
            self._pool = get_pool(self.workers)
        return self._pool

    def _analysis(self, text: str) -> Analysis:
        with self._lock:
            hit = self._analyses.lookup(text)
        if hit is None:
            hit = analyze(text)
            with self._lock:
                self._analyses.store(text, hit)
        return hit

    def score_many(self, answers: Sequence[str | None], solutions: Sequence[Any]) -> list[float]:
        """One reward (0.0 or 1.0) per ``(answer, solution)``; ``None`` answers score 0."""
        if len(answers) != len(solutions):
            raise ValueError(f"{len(answers)} answers but {len(solutions)} solutions")
        rewards = [0.0] * len(answers)
        slow: dict[tuple[str, str], list[int]] = {}
        for i, (answer, solution) in enumerate(zip(answers, solutions, strict=True)):
            if answer is None:
                self.stats["no_answer"] += 1
                continue
            if len(answer) > self.max_answer_chars:
                self.stats["too_long"] += 1
                continue
            gold = solution_text(solution)
            gold_analysis, answer_analysis = self._analysis(gold), self._analysis(answer)
            verdict = fast_verdict(gold_analysis, answer_analysis)
            if verdict is not None:
                self.stats["exact" if gold_analysis.key == answer_analysis.key else "numeric"] += 1
                rewards[i] = float(verdict)
                continue
            pair = (prepare(gold), prepare(answer))
            with self._lock:
                cached = self._verdicts.lookup(pair)
            if cached is not None:
                self.stats["cached"] += 1
                rewards[i] = float(cached)
                continue
            slow.setdefault(pair, []).append(i)
        if slow:
            pairs = list(slow)
            outcomes = self.pool.run("judge", [list(p) for p in pairs], self.timeout_s)
            for pair, (verdict, status, _) in zip(pairs, outcomes, strict=True):
                self.stats["verified" if status == "ok" else status] += len(slow[pair])
                with self._lock:
                    self._verdicts.store(pair, verdict)
                for i in slow[pair]:
                    rewards[i] = float(verdict)
        return rewards

    def score(self, answer: str | None, solution: Any) -> float:
        """The reward of one answer (0.0 or 1.0)."""
        return self.score_many([answer], [solution])[0]

    def check_solutions(self, solutions: Sequence[Any]) -> list[str | None]:
        """For each math gold, a problem (math-verify cannot parse it into math) or ``None``."""
        texts = [prepare(solution_text(s)) for s in solutions]
        outcomes = self.pool.run("parse", texts, max(self.timeout_s, 5.0))
        problems: list[str | None] = []
        for solution, (ok, status, _) in zip(solutions, outcomes, strict=True):
            if ok:
                problems.append(None)
            else:
                reason = (
                    "math-verify cannot parse it as math (answers would only be compared as text)"
                    if status == "ok"
                    else f"parsing failed ({status})"
                )
                problems.append(f"math solution {solution_text(solution)!r}: {reason}")
        return problems


_DEFAULT: MathVerifier | None = None


def default_verifier() -> MathVerifier:
    """The process-wide verifier with default settings."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MathVerifier()
    return _DEFAULT


def math_reward(answer: str | None, solution: Any) -> float:
    """1.0 when math-verify finds the answer equivalent to the ground truth, else 0.0."""
    return default_verifier().score(answer, solution)


def check_math_solution(solution: Any) -> str | None:
    """A problem with a ``math`` ground truth (math-verify cannot parse it), or ``None`` when it is usable."""
    return default_verifier().check_solutions([solution])[0]
