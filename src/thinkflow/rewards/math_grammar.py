"""The fast path's arithmetic: a recursive-descent evaluator for a small, unambiguous subset of LaTeX numerals.

Rules G1–G3 of `thinkflow.rewards.math_fast` (integers, decimals, ``\\frac``, ``\\sqrt``, ``\\pi``, powers,
polynomials in single-letter variables): ``Expr(text, env).parse()`` returns the exact value (a ``Fraction``)
or a float, and raises ``Unsupported`` on anything latex2sympy might read another way.
"""

from __future__ import annotations

import math as _m
import re
from fractions import Fraction
from typing import Any

Value = Fraction | float
_MAX_MAGNITUDE = 1e12
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<cmd>\\[A-Za-z]+)|(?P<var>[a-z])|(?P<op>[-+*/^(){}])|(?P<other>\S))"
)
# Single-letter variables the evaluator accepts: not e (Euler's number for latex2sympy), i/j (imaginary units).
VARIABLES = frozenset("abcdfghklmnpqrstuvwxyz")
# Values substituted for variables: two assignments of unremarkable irrationals.
ENVS = (
    {v: 0.5772156649015329 + 0.1031 * k for k, v in enumerate(sorted(VARIABLES))},
    {v: 1.2020569031595942 + 0.3719 * k for k, v in enumerate(sorted(VARIABLES))},
)
_MULT_CMDS = {"\\cdot", "\\times"}
_FRAC_CMDS = {"\\frac", "\\dfrac", "\\tfrac"}


class Unsupported(Exception):
    """Not in the fast path's grammar: let math-verify decide."""


class Expr:
    """A recursive-descent evaluator for a small, unambiguous subset of LaTeX numerals.

    Grammar: ``expr := [+-] term (('+'|'-') term)*``; ``term := power ((\\cdot|\\times|*|/|\\div)? power)*``
    where implicit multiplication is allowed only before ``\\sqrt``/``\\pi``/a variable, and nothing follows a
    ``/`` in a term (latex2sympy reads ``3/2\\pi`` as 3/(2π)); no variable under ``\\sqrt`` or in a denominator;
    ``power := atom ['^' (digit | '{' expr '}')]``;
    ``atom := number | variable | \\frac{expr}{expr} | \\frac DD | \\sqrt{expr} | \\sqrt D | \\pi | (expr) | {expr}``.
    Variables (single lower-case letters but ``e``, ``i``, ``j``) take the values in ``env``. Mixed numbers
    (``1\\frac12``), juxtaposed numbers (``2 3``), leading zeros, ``2(3)``, ``x(…)`` (a function call?), ``x2``,
    decimals inside expressions (math-verify then compares with sympy's float semantics) and anything else raise
    ``Unsupported``.
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
                    raise Unsupported
                break
            pos = match.end()
            kind = match.lastgroup or "other"
            value = match.group(kind)
            if kind == "cmd" and value in ("\\div",):
                kind, value = "op", "/"
            if kind == "cmd" and value in _MULT_CMDS:
                kind, value = "op", "*"
            if kind == "other":
                raise Unsupported
            self.tokens.append((kind, value))
        self.i = 0
        self.decimals = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise Unsupported
        self.i += 1
        return tok

    def parse(self) -> Value:
        value = self.expr()
        if self.peek() is not None:
            raise Unsupported
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
                raise Unsupported  # "3/2\pi" is 3/(2π) for latex2sympy: only a last "/" is unambiguous
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
                raise Unsupported  # a^b^c: associativity differs between readers
            return _pow(base, exponent)
        return base

    def constant(self, parse: Any) -> Value:
        """``parse()`` where a variable is not allowed (G3: denominators, square roots)."""
        before = self.var_uses
        value: Value = parse()
        if self.var_uses != before:
            raise Unsupported
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
            raise Unsupported
        return Fraction(int(tok[1]))

    def atom(self) -> Value:
        kind, value = self.take()
        if kind == "num":
            if len(value) > 1 and value[0] == "0" and value[1].isdigit():
                raise Unsupported  # "007": leading zeros
            if "." in value:
                self.decimals += 1
            nxt = self.peek()
            if nxt is not None and (nxt[0] == "num" or nxt[1] in ("(", "{") or nxt[1] in _FRAC_CMDS):
                raise Unsupported  # "2 3", "2(3)", "1\frac12": math-verify reads these in surprising ways
            return Fraction(value)
        if kind == "var":
            nxt = self.peek()
            if value not in VARIABLES or value not in self.env:
                raise Unsupported
            if nxt is not None and (nxt[0] in ("num", "var") or nxt[1] in ("(", "{")):
                raise Unsupported  # "x2" (a subscript?), "f(x)" (a function?), "ab" (math-verify reads oddly)
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
                    raise Unsupported
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
        raise Unsupported


def check_value(value: Value) -> Value:
    if isinstance(value, float) and not _m.isfinite(value):
        raise Unsupported
    if abs(float(value)) > _MAX_MAGNITUDE:
        raise Unsupported
    return value


def _mul(a: Value, b: Value) -> Value:
    return check_value(a * b)


def _div(a: Value, b: Value) -> Value:
    if b == 0:
        raise Unsupported
    return check_value(a / b)


def _pow(base: Value, exponent: Value) -> Value:
    if not isinstance(exponent, Fraction) or exponent.denominator != 1 or abs(exponent) > 64:
        raise Unsupported
    if base == 0 and exponent < 0:
        raise Unsupported
    if isinstance(base, Fraction) and (abs(base.numerator) > 10**6 or abs(base.denominator) > 10**6):
        raise Unsupported
    return check_value(base ** int(exponent))


def _sqrt(arg: Value) -> Value:
    if float(arg) < 0:
        raise Unsupported
    if isinstance(arg, Fraction):
        num, den = _m.isqrt(arg.numerator), _m.isqrt(arg.denominator)
        if num * num == arg.numerator and den * den == arg.denominator:
            return Fraction(num, den)
    return check_value(_m.sqrt(float(arg)))
