"""The answer format, in one place: data, rewards and evaluate import it and nothing re-implements it.

* the system prompt and the prompt/messages builder (training prompts and evaluation prompts are built by
  `build_messages` from the same `SYSTEM_PROMPT`);
* ``<think>…</think><answer>…</answer>``: `split_think`, `visible_text`, `extract_answer`, `is_well_formed`,
  `response_parts`, `format_response`;
* multiple-choice letters: `option_letter` (one letter), `option_letters` (one or several), `mcq_key`
  (a benchmark's key written as letters), all over one alphabet, `LETTERS` (A–Z);
* the aha cues and the aha matcher (`has_aha`, `aha_counts`) used by the build's split and evaluation's counts.

Every function here is linear in its input and never raises on text input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

# --- system prompt -------------------------------------------------------------------------------------

# The VLAA-Thinker system prompt, byte for byte as the released model's inference script sends it:
# UCSC-VLAA/VLAA-Thinking inference.py lines 42-47 (commit 5f312fbd2f2887f225ca4daea886f68a929235d2; the
# repository README line 61: "our model is trained with a system prompt. Please ensure that it is included
# for inference"). VLMEvalKit's VLAA-Thinker entry (vlmeval/config.py, 'VLAA-Thinker-Qwen2.5VL-3B') sends the
# same string. The paper prints it in Fig. 12 with a final period after "</answer>"; inference.py has none,
# and this is inference.py's (the string the released weights were trained and evaluated with).
SYSTEM_PROMPT = (
    "You are VL-Thinking\N{THINKING FACE}, a helpful assistant with excellent reasoning ability."
    " A user asks you a question, and you should try to solve it."
    " You should first think about the reasoning process in the mind and then provides the user with the answer."
    " The reasoning process and answer are enclosed within <think> </think> and"
    " <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think>"
    " <answer> answer here </answer>"
)


def build_messages(question: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """The conversation for one image question: the system prompt (none when empty), then the image and question.

    The one prompt builder: the training prompts (`thinkflow.data.load_split`) and the evaluation and
    ``thinkflow ask`` prompts (`thinkflow.evaluate.generate`) are both built here.
    """
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]})
    return messages


def completion_messages(response: str) -> list[dict[str, Any]]:
    """The assistant turn holding a response (an SFT target)."""
    return [{"role": "assistant", "content": [{"type": "text", "text": response}]}]


# --- <think>/<answer> ----------------------------------------------------------------------------------

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


def split_think(text: str) -> tuple[str | None, str]:
    """``(reasoning, rest)``: the content of the first ``<think>…</think>`` block and the text after it.

    A ``</think>`` without an opening tag (chat templates that open the block in the prompt) counts as
    closing a block that started at the beginning. ``reasoning`` is ``None`` when there is no block.
    """
    close = text.find(THINK_CLOSE)
    if close < 0:
        return None, text.strip()
    opened = text.find(THINK_OPEN)
    start = opened + len(THINK_OPEN) if 0 <= opened < close else 0
    return text[start:close].strip(), text[close + len(THINK_CLOSE) :].strip()


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
    the thinking) makes every verifier return 0 (the paper's implicit format reward).
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
    """Well-formedness (R1's ``^<think>.*?</think>\\s*<answer>.*?</answer>$``), for completions and SFT targets.

    Exactly one of each tag, in the order think, /think, answer, /answer; only whitespace before
    ``<think>``, between ``</think>`` and ``<answer>``, and after ``</answer>``; a non-empty reasoning and a
    non-empty answer.
    """
    text = completion_text(completion).strip()
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    positions = [text.find(tag) for tag in _TAGS]
    if positions != sorted(positions) or positions[0] != 0:
        return False
    between = text[positions[1] + len(THINK_CLOSE) : positions[2]]
    reasoning = text[positions[0] + len(THINK_OPEN) : positions[1]]
    answer = text[positions[2] + len(ANSWER_OPEN) : positions[3]]
    return not between.strip() and text.endswith(ANSWER_CLOSE) and bool(reasoning.strip()) and bool(answer.strip())


def format_response(reasoning: str, answer: str) -> str:
    """``<think>reasoning</think><answer>answer</answer>``."""
    return f"{THINK_OPEN}{reasoning.strip()}{THINK_CLOSE}{ANSWER_OPEN}{answer.strip()}{ANSWER_CLOSE}"


def response_parts(response: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a normalised response."""
    reasoning, rest = split_think(response)
    answer = extract_answer(rest)
    return reasoning or "", (answer if answer is not None else rest.strip())


# --- answer normalisation --------------------------------------------------------------------------------


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


# --- multiple-choice letters --------------------------------------------------------------------------

# One alphabet everywhere (data, rewards, evaluate): A–Z, because the benchmark keys are letters without a
# fixed bound: VLMEvalKit maps a question's choices to letters with chr(65 + i) for every choice
# (vlmeval/dataset/utils/mathvista.py `list_to_dict`), and the A–J of the former data/text.py copy would
# have refused the keys of a question with more than ten choices.
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_CHOICE_CHARS = 4096

_BARE = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?")
_WITH_TEXT = re.compile(r"[(\[]?([A-Za-z])[)\].:]\s+\S")
_PREFIXED = re.compile(
    r"(?:the\s+)?(?:correct\s+|final\s+)?(?:option|choice|answer)(?:\s+is)?\s*[:\-]?\s*"
    r"[(\[]?([A-Za-z])[)\]]?(?=[\s.:)\]]|$)",
    re.IGNORECASE,
)
_OPTION_ANYWHERE = re.compile(r"\b(?:[Oo]ption|[Cc]hoice)\s*\(?([A-Z])\b\)?")
_LETTER_SPLIT = re.compile(r"\s*(?:,|;|\band\b|&|/)\s*")


def option_letter(text: str) -> str | None:
    """The one option letter an answer names (upper case), or ``None``.

    ``C``, ``(C)``, ``C)``, ``C.``, ``C:``, ``[C]``, ``c``, ``C) option text``, ``Option C``, ``Answer: C``,
    ``The answer is (C)``, and any of these inside ``$…$`` / ``\\boxed{…}`` / ``\\text{…}`` / ``**…**``.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    s = strip_wrappers(text[:MAX_CHOICE_CHARS])
    match = _BARE.fullmatch(s) or _WITH_TEXT.match(s)
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


def option_letters(text: str) -> frozenset[str] | None:
    """The set of option letters an answer names: one (``C``) or several (``A, C``, ``A and C``, ``(A)/(C)``).

    ``None`` when the text names no letter, or when any listed part is not a letter.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    s = strip_wrappers(text[:MAX_CHOICE_CHARS])
    parts = [p for p in _LETTER_SPLIT.split(s) if p]
    if len(parts) >= 2:
        letters = [option_letter(p) for p in parts]
        if all(letters):
            return frozenset(x for x in letters if x)
    single = option_letter(s)
    return frozenset({single}) if single else None


def find_option_letter(text: str) -> str | None:
    """The option letter named in free text: `option_letter`, else the first "Option C" / "choice (C)" in it."""
    letter = option_letter(text)
    if letter:
        return letter
    match = _OPTION_ANYWHERE.search(text[: 4 * MAX_CHOICE_CHARS])
    return match.group(1) if match else None


def mcq_key(answer: Any, choices: Sequence[Any] | None = None) -> str:
    """A benchmark's multiple-choice key as letters: ``"B"``, ``"(b)"`` -> ``B``; ``"A, C"`` / ``"AC"`` -> ``A, C``.

    An answer equal to a choice's text gives that choice's letter. Anything else is returned unchanged
    (and is then not a usable mcq key: `option_letters` of it is ``None``).
    """
    text = str(answer).strip() if answer is not None else ""
    if choices:
        for i, choice in enumerate(choices[: len(LETTERS)]):
            if text == (str(choice).strip() if choice is not None else ""):
                return LETTERS[i]
    if re.fullmatch(r"[A-Z]{2,6}", text) and len(set(text)) == len(text):  # compact multi-letter key "ACD"
        return ", ".join(sorted(text))
    letters = option_letters(text)
    return ", ".join(sorted(letters)) if letters else text


# --- aha cues ----------------------------------------------------------------------------------------

# The paper's eight aha cues: a distilled sample whose answer contains one goes to the RL split (the
# VLAA-Thinking data split; "aha moments" as a proxy for difficulty, README line 118). The paper's rule is a
# case-insensitive substring test over the whole distilled answer, `any(cue in text.lower())`. Note: the
# paper's Fig. 7 is not this list; it plots the counts of four keywords, one of which ("i should check") is
# not among these eight. (The cue list, the substring rule and Fig. 7's contents are the paper's text as read
# in issue 11; the stored copy of the paper available to this project shows only its first page.)
AHA_CUES: tuple[str, ...] = (
    "wait",
    "again",
    "double-check",
    "hmm",
    "mistake",
    "alternatively",
    "check",
    "i should confirm",
)
AhaMatch = Literal["substring", "word"]
AHA_MATCHES: tuple[str, ...] = ("substring", "word")


@lru_cache(maxsize=64)
def _cue_regex(cue: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(w) for w in cue.lower().split())
    return re.compile(r"(?<![\w-])" + words + r"(?![\w-])", re.IGNORECASE)


def _check_match(match: str) -> None:
    if match not in AHA_MATCHES:
        raise ValueError(f"aha_match must be one of {', '.join(AHA_MATCHES)}, got {match!r}")


def aha_counts(text: str, cues: Sequence[str] = AHA_CUES, match: AhaMatch = "substring") -> dict[str, int]:
    """Occurrences of each cue in ``text``, case-insensitive.

    ``substring`` (the paper's rule): ``text.lower().count(cue.lower())`` ("wait" counts in "awaiting");
    ``word``: whole words/phrases only (words of a phrase may be separated by any whitespace).
    """
    _check_match(match)
    counts: dict[str, int] = {}
    lowered = (text or "").lower()
    for cue in cues:
        key = cue.strip().lower()
        if not key:
            continue
        counts[cue] = lowered.count(key) if match == "substring" else len(_cue_regex(key).findall(lowered))
    return counts


def has_aha(text: str, cues: Sequence[str] = AHA_CUES, match: AhaMatch = "substring") -> bool:
    """True when ``text`` contains one of ``cues`` (the rule of `aha_counts`; ``substring`` is the paper's)."""
    _check_match(match)
    if not text:
        return False
    lowered = text.lower()
    if match == "substring":
        return any(cue.strip().lower() in lowered for cue in cues if cue.strip())
    return any(_cue_regex(cue.strip().lower()).search(lowered) for cue in cues if cue.strip())
