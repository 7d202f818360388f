"""``digit``: a number that matches the ground truth exactly after trimming (CLEVR-Math counting).

``31`` does not match ``3``; ``3.0`` does not match ``3``. Trimming removes surrounding whitespace and
delimiters that wrap the whole answer (``$3$``, ``\\boxed{3}``). Integer ground truths (VLAA's ``gt``
can be a JSON int) are compared through their decimal text.
"""

from __future__ import annotations

import re
from typing import Any

from thinkflow.format import solution_text, strip_wrappers

NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)")
MAX_CHARS = 64


def as_number_text(text: str) -> str | None:
    """The trimmed text if it is a plain number (``12``, ``-3``, ``0.5``), else ``None``."""
    if len(text) > 4 * MAX_CHARS:
        return None
    s = strip_wrappers(text)
    if len(s) > MAX_CHARS or not NUMBER_RE.fullmatch(s):
        return None
    return s


def digit_reward(answer: str | None, solution: Any) -> float:
    """1.0 when the answer is a number equal, as text, to the trimmed ground truth; else 0.0."""
    if answer is None:
        return 0.0
    got = as_number_text(answer)
    want = solution_text(solution)
    return 1.0 if got is not None and got == want else 0.0


def check_digit_solution(solution: Any) -> str | None:
    """A problem with a ``digit`` ground truth (not a plain number), or ``None`` when it is usable."""
    text = solution_text(solution)
    if as_number_text(text) != text:
        return f"digit solution must be a plain number such as 3 or 12, got {text!r}"
    return None
