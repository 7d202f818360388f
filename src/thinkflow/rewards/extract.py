"""Answer extraction (the implicit format reward) and the optional explicit format check.

The reward is computed on the content of the completion's ``<answer>…</answer>`` block only. Text inside
``<think>…</think>`` is never scored: an answer block inside a thinking block does not count. If no
answer can be extracted, every verifier returns 0 (the paper's "implicit format reward").

Every function here is linear in the input length and never raises, whatever the input.
"""

from __future__ import annotations

from typing import Any

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


def _content_text(content: Any) -> str:
    """Text of one message's ``content``: a string, or a list of parts (``{"type": "text", "text": …}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL passes it: a string, or conversational messages.

    Conversational completions (``[{"role": "assistant", "content": …}]``) give the content of the last
    assistant message. Anything else gives ``""`` (scored 0, never an exception).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, list | tuple):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                return _content_text(message.get("content"))
    return ""


def visible_text(text: str) -> str:
    """``text`` without its thinking blocks.

    A ``</think>`` before any ``<think>`` closes a thinking block opened by the prompt (chat templates that
    start the assistant turn with ``<think>``): everything before it is thinking. An unclosed ``<think>``
    hides the rest of the text.
    """
    start = 0
    first_close = text.find(THINK_CLOSE)
    first_open = text.find(THINK_OPEN)
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        start = first_close + len(THINK_CLOSE)
    pieces = []
    while True:
        opened = text.find(THINK_OPEN, start)
        if opened < 0:
            pieces.append(text[start:])
            break
        pieces.append(text[start:opened])
        closed = text.find(THINK_CLOSE, opened + len(THINK_OPEN))
        if closed < 0:
            break
        start = closed + len(THINK_CLOSE)
    # A newline between pieces: a tag can never be assembled from text on both sides of a thinking block.
    return "\n".join(pieces)


def extract_answer(completion: Any) -> str | None:
    """The stripped content of the last ``<answer>…</answer>`` block outside ``<think>``, or ``None``.

    ``None`` (no valid answer: no block, an unclosed block, an empty answer, or an answer only inside
    the thinking) makes every verifier return 0.
    """
    text = visible_text(completion_text(completion))
    close = text.rfind(ANSWER_CLOSE)
    if close < 0:
        return None
    opened = text.rfind(ANSWER_OPEN, 0, close)
    if opened < 0:
        return None
    answer = text[opened + len(ANSWER_OPEN) : close].strip()
    return answer or None


def is_well_formed(completion: Any) -> bool:
    """The explicit format check (R1's ``^<think>.*?</think>\\s*<answer>.*?</answer>$``).

    Exactly one of each tag, in the order think, /think, answer, /answer; only whitespace before
    ``<think>``, between ``</think>`` and ``<answer>``, and after ``</answer>``. Used only by the optional
    explicit format reward (off by default: the paper relies on the implicit format reward).
    """
    text = completion_text(completion).strip()
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    positions = [text.find(tag) for tag in _TAGS]
    if positions != sorted(positions) or positions[0] != 0:
        return False
    between = text[positions[1] + len(THINK_CLOSE) : positions[2]]
    return not between.strip() and text.endswith(ANSWER_CLOSE)


def _closing_brace(text: str, opened: int) -> int:
    """Index of the brace closing ``text[opened] == "{"``, or -1."""
    depth = 0
    for i in range(opened, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


_WRAPPERS = ("\\boxed{", "\\fbox{", "\\text{", "\\textbf{", "\\mathrm{", "\\mathbf{")
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"))


def strip_wrappers(text: str, *, max_rounds: int = 8) -> str:
    """Remove delimiters wrapping the whole answer.

    ``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``, ``\\boxed{…}``, ``\\fbox{…}``, ``\\text{…}``, ``**…**``.
    """
    s = text.strip()
    for _ in range(max_rounds):
        before = s
        for left, right in _DELIMITERS:
            if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
                inner = s[len(left) : -len(right)]
                if left not in inner and right not in inner:
                    s = inner.strip()
        for wrapper in _WRAPPERS:
            if s.startswith(wrapper) and s.endswith("}"):
                opened = len(wrapper) - 1
                if _closing_brace(s, opened) == len(s) - 1:
                    s = s[len(wrapper) : -1].strip()
        if s == before:
            break
    return s


def solution_text(solution: Any) -> str:
    """A ground truth as text (VLAA ``gt`` can be an int); ``None`` gives ``""``."""
    if solution is None or isinstance(solution, bool):
        return "" if solution is None else str(solution)
    if isinstance(solution, float) and solution.is_integer():
        return str(int(solution))
    return str(solution).strip()
