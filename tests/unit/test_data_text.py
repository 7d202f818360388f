"""Response normalisation and final-answer extraction (VLAA-Thinking ``ds_answer`` shapes)."""

from __future__ import annotations

import pytest

from thinkflow.data.text import final_answer, math_puma_answer, normalize_response, word_count
from thinkflow.format import find_option_letter, format_response, has_aha, response_parts, split_think

CLEVR = (
    "<think>  \nOkay, there is one sphere and three cylinders. Removing the sphere leaves 3.  \n</think>  \n\n"
    "Removing the sphere leaves only the three cylinders.  \n\n**Answer:** There are 3 objects remaining.  "
)
GEOQA = (
    "<think>\nSo angle ADC = 30 degrees and tan is sqrt(3)/3, option C.\n</think>\n\nThe value is ...\n\n"
    "**Answer:** \\(\\boxed{\\frac{\\sqrt{3}}{3}}\\) (Option C)"
)
SYNTH = "<think>\nSolve for a: a = -5.\n</think>\n\nSteps...\n\n**Final Answer:**\n\\[\n\\boxed{y = -5 \\sin(-5x)}\n\\]"


def test_split_think_variants() -> None:
    assert split_think("<think>a b</think> rest") == ("a b", "rest")
    assert split_think("reasoning only</think>answer") == ("reasoning only", "answer")
    assert split_think("no tags at all") == (None, "no tags at all")


@pytest.mark.parametrize(
    ("text", "vtype", "expected"),
    [
        (CLEVR.split("</think>")[1], "digit", "There are 3 objects remaining"),
        (GEOQA.split("</think>")[1], "mcq", "C"),
        (SYNTH.split("</think>")[1], "math", "y = -5 \\sin(-5x)"),
        ("The answer is <answer> 42 </answer>", "digit", "42"),
        ("Answer: B) the second one", "mcq", "B"),
        ("It looks like a busy street with cars.", "open", "It looks like a busy street with cars."),
        ("", "digit", ""),
    ],
)
def test_final_answer(text: str, vtype: str, expected: str) -> None:
    assert final_answer(text, vtype) == expected


def test_normalize_response_uses_final_answer_and_falls_back_to_gt() -> None:
    out = normalize_response(GEOQA, "C", "mcq")
    assert out is not None and out.startswith("<think>So angle ADC") and out.endswith("<answer>C</answer>")
    assert normalize_response("<think>only thinking</think>", "7", "digit") == format_response("only thinking", "7")
    assert normalize_response("no reasoning here", "7", "digit") is None
    assert normalize_response("<think>x</think>", "", "digit") is None


def test_response_parts_and_word_count() -> None:
    r = format_response("step one. step two.", "5")
    assert response_parts(r) == ("step one. step two.", "5")
    assert word_count("a  b\nc") == 3


def test_math_puma_answer_and_option_letter() -> None:
    gt = "Step 1: ...\nStep 5: Substitute.\n\n†Answer: y = -5 * sin(-5 * x)."
    assert math_puma_answer(gt) == "y = -5 * sin(-5 * x)"
    assert math_puma_answer("12") == "12"
    assert find_option_letter("(c) green") == "C"
    assert find_option_letter("The right choice is option D.") == "D"
    assert find_option_letter("forty two") is None


def test_aha_rule_substring_by_default_word_as_option() -> None:
    assert has_aha("Hmm, that is odd.")
    assert has_aha("Let me DOUBLE-CHECK that.")
    assert has_aha("I should  confirm the count.", match="word")  # words of a phrase: any whitespace
    assert not has_aha("The checkered flag waits against the wall.", match="word")  # no whole-word cue
    assert has_aha("The checkered flag waits against the wall.")  # the paper's rule: substrings count
    assert not has_aha("Counting gives 3.")
    assert has_aha("Counting gives 3.", cues=["counting"])
