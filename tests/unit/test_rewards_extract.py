"""Answer extraction (implicit format reward), the explicit format check, and wrapper stripping."""

from __future__ import annotations

import pytest

from thinkflow.rewards.extract import completion_text, extract_answer, is_well_formed, solution_text, strip_wrappers


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("<think>because</think><answer>42</answer>", "42"),
        ("<think>because</think>\n<answer>  42 \n</answer>", "42"),
        ("<answer>42</answer>", "42"),  # no thinking: still a valid answer
        ("reasoning</think><answer>7</answer>", "7"),  # template opened <think> in the prompt
        ("<think>a</think><answer>1</answer> then <answer>2</answer>", "2"),  # the last block is final
        ("<think>a</think><answer>1</answer><|im_end|>", "1"),
        ("<think>I guess <answer>5</answer> maybe</think><answer>6</answer>", "6"),
    ],
)
def test_extracts_the_answer_block(completion: str, answer: str) -> None:
    assert extract_answer(completion) == answer


@pytest.mark.parametrize(
    "completion",
    [
        "",
        "42",
        "<think>the answer is 42</think>",
        "<think>x</think><answer>42",  # unclosed
        "<think>x</think>42</answer>",  # no opening tag
        "<think>x</think><answer>   </answer>",  # empty
        "<think>only here: <answer>42</answer></think>",  # inside the thinking: never scored
        "<think>unclosed thinking <answer>42</answer>",
        "</answer><answer>",
    ],
)
def test_no_valid_answer_is_none(completion: str) -> None:
    assert extract_answer(completion) is None


def test_conversational_completions() -> None:
    conv = [{"role": "assistant", "content": "<think>t</think><answer>B</answer>"}]
    assert extract_answer(conv) == "B"
    content = [{"type": "text", "text": "<think>t</think><answer>"}, {"type": "text", "text": "9</answer>"}]
    parts = [{"role": "assistant", "content": content}]
    assert extract_answer(parts) == "9"
    multi = [
        {"role": "assistant", "content": "<answer>1</answer>"},
        {"role": "tool", "content": "result"},
        {"role": "assistant", "content": "<answer>2</answer>"},
    ]
    assert extract_answer(multi) == "2"
    assert completion_text(None) == "" and completion_text(12) == "" and completion_text([1, 2]) == ""


@pytest.mark.parametrize(
    ("completion", "ok"),
    [
        ("<think>r</think><answer>a</answer>", True),
        ("  <think>r</think>\n\n<answer>a</answer>\n", True),
        ("<answer>a</answer>", False),
        ("<think>r</think>text<answer>a</answer>", False),
        ("<think>r</think><answer>a</answer> trailing", False),
        ("<think>r</think><think>s</think><answer>a</answer>", False),
        ("<answer>a</answer><think>r</think>", False),
    ],
)
def test_explicit_format_check(completion: str, ok: bool) -> None:
    assert is_well_formed(completion) is ok


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("$x$", "x"),
        ("$$x$$", "x"),
        ("\\(x\\)", "x"),
        ("\\[x\\]", "x"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("$\\boxed{3}$", "3"),
        ("\\text{C}", "C"),
        ("**C**", "C"),
        ("$a$ and $b$", "$a$ and $b$"),  # not one wrapper
        ("\\boxed{1} + \\boxed{2}", "\\boxed{1} + \\boxed{2}"),
    ],
)
def test_strip_wrappers(text: str, stripped: str) -> None:
    assert strip_wrappers(text) == stripped


def test_solution_text_handles_vlaa_int_ground_truths() -> None:
    assert solution_text(3) == "3"
    assert solution_text(3.0) == "3"
    assert solution_text(" (D) ") == "(D)"
    assert solution_text(None) == ""
