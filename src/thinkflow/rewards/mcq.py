"""``mcq``: option-letter matching in the forms models and datasets actually use.

Accepted answers (any letter A–Z, either case): ``C``, ``(C)``, ``C)``, ``C.``, ``C:``, ``[C]``, ``c``,
``(c)``, ``C) option text``, ``(C) option text``, ``C. option text``, ``Option C``, ``Answer: C``,
``The answer is (C)``, and any of these inside ``$…$`` / ``\\boxed{…}`` / ``\\text{…}`` / ``**…**``.
The ground truth may itself be ``(D)`` or ``D``. Anything else (an option's text without its letter,
two letters) scores 0.
"""

from __future__ import annotations

import re
from typing import Any

from thinkflow.rewards.extract import solution_text, strip_wrappers

_BARE = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?")
_WITH_TEXT = re.compile(r"[(\[]?([A-Za-z])[)\].:]\s+\S")
_PREFIXED = re.compile(
    r"(?:the\s+)?(?:correct\s+|final\s+)?(?:option|choice|answer)(?:\s+is)?\s*[:\-]?\s*"
    r"[(\[]?([A-Za-z])[)\]]?(?=[\s.:)\]]|$)",
    re.IGNORECASE,
)
MAX_CHARS = 4096


def option_letter(text: str) -> str | None:
    """The option letter an answer names (upper case), or ``None``."""
    if not isinstance(text, str) or not text.strip():
        return None
    s = strip_wrappers(text[:MAX_CHARS])
    for pattern in (_BARE, _WITH_TEXT):
        match = pattern.fullmatch(s) if pattern is _BARE else pattern.match(s)
        if match:
            return match.group(1).upper()
    match = _PREFIXED.match(s)
    if match:
        letter = match.group(1)
        # "the answer is a triangle": a lower-case letter followed by more words is an article, not an option.
        if letter.islower() and s[match.end() : match.end() + 1].isspace():
            return None
        return letter.upper()
    return None


def mcq_reward(answer: str | None, solution: Any) -> float:
    """1.0 when the answer names the ground truth's option letter, else 0.0."""
    if answer is None:
        return 0.0
    want = option_letter(solution_text(solution))
    got = option_letter(answer)
    return 1.0 if want is not None and got == want else 0.0


def check_mcq_solution(solution: Any) -> str | None:
    """A problem with an ``mcq`` ground truth (no option letter), or ``None`` when it is usable."""
    text = solution_text(solution)
    if option_letter(text) is None:
        return f"mcq solution must be an option letter such as C or (C), got {text!r}"
    return None
