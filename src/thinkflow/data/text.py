"""Reasoning-text helpers shared by the sources and the build steps.

A response in ThinkFlow's SFT format is ``<think>REASONING</think><answer>ANSWER</answer>``. Teachers and
published datasets (VLAA-Thinking's ``ds_answer``) give R1-style output instead: ``<think>…</think>`` followed
by free text that ends with the final answer (``**Answer:** 3``, ``\\boxed{…}``, ``†Answer: …``). The
functions here find the final answer in such text and build the normalised response; the format itself
(tags, option letters, well-formedness) is `thinkflow.format`'s.
"""

from __future__ import annotations

import re

from thinkflow.format import find_option_letter, format_response, split_think

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# "Answer: …", "**Answer:** …", "Final Answer: …", "†Answer: …" (Math PUMA ground truths).
_ANSWER_MARK = re.compile(r"(?:\*\*|†)?\s*(?:final\s+)?answer\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?", re.IGNORECASE)
_WORD = re.compile(r"\S+")


def _boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (balanced braces), or ``None``."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    begin = start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i].strip()
    return None


def _clean(answer: str) -> str:
    s = answer.strip().strip("*").strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$"), ("$", "$")):
        if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right):
            s = s[len(left) : -len(right)].strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    return s


def final_answer(text: str, verifier_type: str | None = None) -> str:
    """The final answer in free text that follows the reasoning ("" when there is none).

    Looks, in order, for an ``<answer>`` block, a ``\\boxed{…}``, the last "Answer:" marker (the rest of its
    line), then falls back to the whole text (open-ended answers). For multiple choice the option letter is
    returned when the answer names one.
    """
    text = text.strip()
    if not text:
        return ""
    tags = _ANSWER_TAG.findall(text)
    marks = list(_ANSWER_MARK.finditer(text))
    line = ""
    if marks:
        tail = text[marks[-1].end() :].strip()
        line = tail.split("\n\n")[0].strip() if verifier_type == "open" else tail.splitlines()[0] if tail else ""
    if verifier_type == "mcq":
        for candidate in (*(t for t in tags[-1:]), line, text if len(text) < 40 else ""):
            letter = find_option_letter(candidate) if candidate else None
            if letter:
                return letter
    if verifier_type == "open":  # free text: keep it as written
        return (tags[-1] if tags else line or text).strip().strip("*").strip()
    if tags:
        return _clean(tags[-1])
    boxed = _boxed(text)
    if boxed:
        return _clean(boxed)
    if line:
        return _clean(line)
    return _clean(text)


def normalize_response(text: str, fallback_answer: str = "", verifier_type: str | None = None) -> str | None:
    """R1-style output -> ``<think>…</think><answer>…</answer>``; ``None`` when there is no reasoning block.

    The answer is the final answer found in the text after ``</think>``; ``fallback_answer`` (the ground
    truth) is used when that text has none.
    """
    reasoning, rest = split_think(text)
    if not reasoning:
        return None
    answer = final_answer(rest, verifier_type) or fallback_answer.strip()
    if not answer:
        return None
    return format_response(reasoning, answer)


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(_WORD.findall(text))


def math_puma_answer(solution: str) -> str:
    """The final answer of a Math PUMA multi-step solution (the text after its last ``†Answer:``)."""
    idx = solution.rfind("†Answer:")
    if idx < 0:
        return solution.strip()
    return _clean(solution[idx + len("†Answer:") :].strip().splitlines()[0] if solution[idx:].strip() else "")
