"""Each rule-based verifier, every form the issue lists, on the answer content."""

from __future__ import annotations

import math

import pytest

from thinkflow.rewards.digit import check_digit_solution, digit_reward
from thinkflow.rewards.iou import box_iou, check_iou_solution, iou_reward, parse_box
from thinkflow.rewards.mcq import check_mcq_solution, mcq_reward, option_letter

# --- digit -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "solution", "reward"),
    [
        ("3", "3", 1.0),
        (" 3 ", "3", 1.0),
        ("3", 3, 1.0),  # VLAA gt can be an int
        ("12", 12, 1.0),
        ("$3$", 3, 1.0),
        ("\\boxed{3}", "3", 1.0),
        ("31", "3", 0.0),  # exact: 31 does not match 3
        ("3", "31", 0.0),
        ("3.0", "3", 0.0),
        ("three", "3", 0.0),
        ("3 apples", "3", 0.0),
        ("", "3", 0.0),
        (None, "3", 0.0),
        ("-2", "-2", 1.0),
    ],
)
def test_digit(answer: str | None, solution: object, reward: float) -> None:
    assert digit_reward(answer, solution) == reward


def test_digit_solution_check() -> None:
    assert check_digit_solution(3) is None
    assert check_digit_solution("7") is None
    assert "plain number" in (check_digit_solution("seven") or "")


# --- mcq -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    ["C", "(C)", "C)", "C.", "c", "(c)", "C) option text", "(C) blue car", "C. blue car", "Option C", "option c",
     "Answer: C", "The answer is (C)", "The correct answer is C.", "\\boxed{C}", "$C$", "\\text{C}", "**C**", "[C]",
     "C:", " C "],
)
@pytest.mark.parametrize("solution", ["C", "(C)", "c", "C)"])
def test_mcq_accepts_common_forms(answer: str, solution: str) -> None:
    assert mcq_reward(answer, solution) == 1.0


@pytest.mark.parametrize(
    "answer",
    ["D", "(D)", "D) option text", "Option D", "CD", "blue car", "", "The answer is a car", "Cat", "C D", "Option Cat"],
)
def test_mcq_rejects_other_answers(answer: str) -> None:
    assert mcq_reward(answer, "(C)") == 0.0


def test_mcq_letters_and_solution_check() -> None:
    assert option_letter("(d)") == "D"
    assert option_letter("the answer is a dog") is None
    assert mcq_reward(None, "C") == 0.0
    assert check_mcq_solution("(D)") is None
    assert "option letter" in (check_mcq_solution("blue") or "")


# --- iou -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("[10, 20, 30, 40]", (10, 20, 30, 40)),
        ("[[10, 20, 30, 40]]", (10, 20, 30, 40)),
        ('[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]', (10, 20, 30, 40)),
        ('{"bbox": [0.1, 0.2, 0.3, 0.4]}', (0.1, 0.2, 0.3, 0.4)),
        ("[[10, 20], [30, 40]]", (10, 20, 30, 40)),
        ("(10, 20), (30, 40)", (10, 20, 30, 40)),
        ("x1=10, y1=20, x2=30, y2=40", (10, 20, 30, 40)),
        ("The box is [10.5,20,30,40.25].", (10.5, 20, 30, 40.25)),
        ("$[1, 2, 3, 4]$", (1, 2, 3, 4)),
    ],
)
def test_parse_box_forms(text: str, box: tuple[float, ...]) -> None:
    assert parse_box(text) == pytest.approx(box)


@pytest.mark.parametrize(
    "text",
    ["[30, 20, 10, 40]", "[10, 40, 30, 20]", "[nan, 1, 2, 3]", "[1, 2, inf, 4]", "[NaN, 1, 2, 3]", "[1, 2, 3]",
     "no box", "", "[1e999, 1, 2, 3]", '{"bbox": [1, 2, 3, "x"]}', "[" * 5000],
)
def test_invalid_boxes(text: str) -> None:
    assert parse_box(text) is None
    assert iou_reward(text, "[0, 0, 10, 10]") == 0.0


def test_iou_values() -> None:
    assert iou_reward("[0, 0, 10, 10]", "[0, 0, 10, 10]") == 1.0
    assert iou_reward("[0, 0, 10, 10]", [0, 0, 10, 20]) == pytest.approx(0.5)
    assert iou_reward("[0, 0, 10, 10]", "[5, 0, 15, 10]") == pytest.approx(50 / 150)
    assert iou_reward("[20, 20, 30, 30]", "[0, 0, 10, 10]") == 0.0
    assert iou_reward("[0.0, 0.0, 0.5, 0.5]", "[0.0, 0.0, 0.5, 1.0]") == pytest.approx(0.5)  # relative
    assert iou_reward(None, "[0, 0, 1, 1]") == 0.0
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # empty union


def test_iou_converts_the_prediction_to_the_ground_truth_frame() -> None:
    # ground truth relative, prediction in pixels of a 200x100 image
    assert iou_reward("[0, 0, 100, 50]", "[0, 0, 0.5, 0.5]", image_size=(200, 100)) == pytest.approx(1.0)
    # ground truth in pixels, prediction relative
    assert iou_reward("[0, 0, 0.5, 0.5]", "[0, 0, 100, 50]", image_size=(200, 100)) == pytest.approx(1.0)
    # unknown image size: compared as written (in the ground truth's frame)
    assert iou_reward("[0, 0, 100, 50]", "[0, 0, 0.5, 0.5]") == pytest.approx(0.25 / (100 * 50))
    # a bogus image size is ignored
    assert iou_reward("[0, 0, 1, 1]", "[0, 0, 1, 1]", image_size=(math.nan, 0)) == 1.0


def test_iou_solution_check() -> None:
    assert check_iou_solution("[1, 2, 3, 4]") is None
    assert check_iou_solution([1, 2, 3, 4]) is None
    assert "box" in (check_iou_solution("[3, 2, 1, 4]") or "")
