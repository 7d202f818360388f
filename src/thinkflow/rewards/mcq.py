"""``mcq``: option letters, single (``C``) or several (``A, C``), read by `thinkflow.format`.

Accepted answers (any letter A–Z, either case): ``C``, ``(C)``, ``C)``, ``C.``, ``C:``, ``[C]``, ``c``,
``(c)``, ``C) option text``, ``(C) option text``, ``C. option text``, ``Option C``, ``Answer: C``,
``The answer is (C)``, and any of these inside ``$…$`` / ``\\boxed{…}`` / ``\\text{…}`` / ``**…**``.
A multi-letter ground truth (``A, C``: some LogicVista/WeMath keys) needs exactly that set of letters
(``A, C``, ``C and A``, ``(A)/(C)``). The ground truth may itself be ``(D)`` or ``D``. Anything else (an
option's text without its letter, a different set of letters) scores 0. Training and evaluation score
multiple choice with this same function.
"""

from __future__ import annotations

from typing import Any

from thinkflow.format import option_letter, option_letters, solution_text

__all__ = ["check_mcq_solution", "mcq_reward", "option_letter"]


def mcq_reward(answer: str | None, solution: Any) -> float:
    """1.0 when the answer names exactly the ground truth's option letter(s), else 0.0."""
    if answer is None:
        return 0.0
    want = option_letters(solution_text(solution))
    return 1.0 if want is not None and option_letters(answer) == want else 0.0


def check_mcq_solution(solution: Any) -> str | None:
    """A problem with an ``mcq`` ground truth (no option letter), or ``None`` when it is usable."""
    text = solution_text(solution)
    if option_letters(text) is None:
        return f"mcq solution must be option letter(s) such as C, (C) or A, C, got {text!r}"
    return None
