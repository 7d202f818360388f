"""`thinkflow.format`: the system prompt, the one prompt builder, and one answer format for train = eval = build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import thinkflow.data.loader as loader
import thinkflow.evaluate.generate as gen
from thinkflow import format as fmt
from thinkflow.cli import app
from thinkflow.data.synthetic import generate as synth
from thinkflow.evaluate.score import score_predictions
from thinkflow.rewards import MixedReward


def test_system_prompt_is_inference_py_byte_for_byte() -> None:
    # UCSC-VLAA/VLAA-Thinking inference.py lines 42-47 (commit 5f312fbd2f2887f225ca4daea886f68a929235d2),
    # joined: one line, THINKING FACE (U+1F914, UTF-8 f0 9f a4 94) after "VL-Thinking", no final period.
    expected = (
        b"You are VL-Thinking\xf0\x9f\xa4\x94, a helpful assistant with excellent reasoning ability. "
        b"A user asks you a question, and you should try to solve it. "
        b"You should first think about the reasoning process in the mind and then provides the user with the "
        b"answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
        b"tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>"
    )
    assert fmt.SYSTEM_PROMPT.encode("utf-8") == expected
    assert "\n" not in fmt.SYSTEM_PROMPT and not fmt.SYSTEM_PROMPT.endswith(".")  # Fig. 12 adds a period


def test_one_builder_for_training_and_evaluation_prompts(tmp_path: Path, tiny_model: Path) -> None:
    # the training loader and the evaluation generator use the very function of thinkflow.format
    assert loader.build_messages is fmt.build_messages and gen.build_messages is fmt.build_messages
    out = tmp_path / "ds"
    synth(str(out), 10, seed=1)
    for prompt in (fmt.SYSTEM_PROMPT, "Answer briefly.", ""):
        row = loader.load_split(str(out), "sft", system_prompt=prompt)[0]
        built = fmt.build_messages(row["question"], prompt)
        texts = [[p.get("text") for p in m["content"] if p.get("text")] for m in row["prompt"]]
        assert [m["role"] for m in row["prompt"]] == [m["role"] for m in built]
        assert texts == [[p["text"] for p in m["content"] if p.get("text")] for m in built]
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    (item,) = gen.vllm_inputs(processor, [Image.new("RGB", (56, 56))], ["How many?"])
    templated = processor.apply_chat_template(
        fmt.build_messages("How many?", fmt.SYSTEM_PROMPT), add_generation_prompt=True, tokenize=False
    )
    assert item["prompt"] == templated and fmt.SYSTEM_PROMPT in item["prompt"]
    (bare,) = gen.vllm_inputs(processor, [Image.new("RGB", (56, 56))], ["How many?"], "")
    assert fmt.SYSTEM_PROMPT not in bare["prompt"]  # "" sends no system prompt


@pytest.mark.parametrize(
    ("command", "preset"),
    [("sft", "tiny-sft"), ("grpo", "tiny-grpo"), ("evaluate", "tiny-eval"), ("sft", "qwen2.5-vl-3b-sft")],
)
def test_system_prompt_is_a_config_key(command: str, preset: str) -> None:
    shown = CliRunner().invoke(app, [command, "--config", preset, "--print-config"])
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.output)["system_prompt"] == fmt.SYSTEM_PROMPT
    assert "VL-Thinking\N{THINKING FACE}" in shown.output  # printed as the emoji, not an escape
    none = CliRunner().invoke(app, [command, "--config", preset, "--set", "system_prompt=", "--print-config"])
    assert none.exit_code == 0 and "system_prompt: ''" in none.output


def test_evaluate_max_pixels_default_is_the_papers() -> None:
    shown = CliRunner().invoke(app, ["evaluate", "--config", "tiny-eval", "--print-config"])
    assert shown.exit_code == 0 and f"max_pixels: {256 * 32 * 32}" in shown.output


# --- one answer format: the training reward and the evaluation scorer agree -----------------------------

CASES = [
    ("<think>t</think><answer>C</answer>", "C", "mcq"),
    ("<think>t</think><answer>(c) a circle</answer>", "C", "mcq"),
    ("<think>t</think><answer>A, C</answer>", "A, C", "mcq"),
    ("<think>t</think><answer>C and A</answer>", "A, C", "mcq"),
    ("<think>t</think><answer>A</answer>", "A, C", "mcq"),  # a subset of a multi-letter key is wrong
    ("<think>t</think><answer>A, C</answer>", "C", "mcq"),  # two letters for a one-letter key are wrong
    ("<think>t</think><answer>Option Z</answer>", "Z", "mcq"),  # one alphabet, A-Z
    ("<think>t</think><answer>The answer is (B)</answer>", "(B)", "mcq"),
    ("<think>the answer is <answer>D</answer></think>no tag", "D", "mcq"),  # an answer inside thinking
    ("<think>t</think><answer>12</answer>", "12", "digit"),
    ("<think>t</think><answer>12.0</answer>", "12", "digit"),
    ("<think>t</think><answer>[10, 20, 30, 40]</answer>", "[10, 20, 30, 40]", "iou"),
    ("<think>t</think><answer>[10, 20, 30, 40, 50]</answer>", "[10, 20, 30, 40]", "iou"),  # 5 numbers: no box
    ("<think>t</think><answer>(10, 20), (30, 40), 99</answer>", "[10, 20, 30, 40]", "iou"),
    ("<think>t</think><answer>[0.2, 0.3, 1.7, 0.9]</answer>", "[0.2, 0.3, 1.7, 0.9]", "iou"),  # mixed frames
    ("<think>t</think><answer>\\frac{1}{2}</answer>", "0.5", "math"),
    ("<think>t</think><answer>x = 3</answer>", "4", "math"),
    ("<think>t</think>", "C", "mcq"),
]


def test_training_reward_and_evaluation_scorer_give_identical_verdicts() -> None:
    completions, solutions, types = (list(x) for x in zip(*CASES, strict=True))
    reward = MixedReward()
    train = reward.score_batch(completions, solutions, types)
    evaluated = score_predictions(completions, solutions, types, fallback_to_raw=False, reward=reward)
    assert [s.reward for s in evaluated] == train.accuracy
    assert [s.answer for s in evaluated] == train.answers
    assert [s.well_formed for s in evaluated] == [fmt.is_well_formed(c) for c in completions]
    want = [True, True, True, True, False, False, True, True, False, True, False, True, False, False, False]
    want += [True, False]
    assert [s.correct for s in evaluated] == [*want, False]


def test_five_number_box_scores_zero_through_the_cli(tmp_path: Path) -> None:
    rows = [
        {"completion": "<think>x</think><answer>[10, 20, 30, 40, 50]</answer>", "solution": "[10, 20, 30, 40]"},
        {"completion": "<think>x</think><answer>(10, 20), (30, 40), 99</answer>", "solution": "[10, 20, 30, 40]"},
        {"completion": "<think>x</think><answer>(10, 20), (30, 40)</answer>", "solution": "[10, 20, 30, 40]"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({**r, "verifier_type": "iou"}) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["rewards", "score", str(src), "-o", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 0, res.output
    scored = [json.loads(line)["reward"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert scored == [0.0, 0.0, 1.0]


def test_mixed_frame_solution_box_is_rejected_at_validation(tmp_path: Path) -> None:
    from thinkflow.data.validate import ValidateConfig, check
    from thinkflow.records import read_jsonl, write_jsonl

    out = tmp_path / "ds"
    synth(str(out), 20, seed=3)
    rows = list(read_jsonl(out / "rl.jsonl"))
    iou = next(r for r in rows if r["verifier_type"] == "iou")
    iou["solution"] = "[0.2, 0.3, 1.7, 0.9]"
    write_jsonl(out / "rl.jsonl", rows)
    (out / "manifest.json").unlink()
    text = "\n".join(str(p) for p in check(ValidateConfig(data=str(out), check_images=False)).problems)
    assert f"id={iou['id']!r}: field 'solution': iou solution '[0.2, 0.3, 1.7, 0.9]' mixes relative" in text


def test_option_letters_single_multi_and_keys() -> None:
    assert fmt.option_letter("(c)") == "C" and fmt.option_letter("Z.") == "Z"
    assert fmt.option_letters("A, C") == frozenset("AC") == fmt.option_letters("(C)/(A)")
    assert fmt.option_letters("C) 5, 6") == frozenset("C")  # the option's own text holds a comma
    assert fmt.option_letters("a triangle") is None
    assert fmt.mcq_key("ACD") == "A, C, D" and fmt.mcq_key("circle", ["square", "circle"]) == "B"


def test_aha_rule_is_the_papers_substring_test_with_word_option() -> None:
    assert fmt.AHA_CUES == (
        "wait", "again", "double-check", "hmm", "mistake", "alternatively", "check", "i should confirm"
    )  # fmt: skip
    for text in ("Let me re-check.", "Awaiting the result", "Checking the sum", "I should confirm it"):
        assert fmt.has_aha(text) == any(cue in text.lower() for cue in fmt.AHA_CUES)
        assert fmt.has_aha(text)
    assert not fmt.has_aha("Let me re-check.", match="word")  # "check" is not a whole word in "re-check"
    assert not fmt.has_aha("I should\nconfirm")  # substring of the text as written: no
    assert fmt.has_aha("I should\nconfirm", match="word")  # whole words across any whitespace
    with pytest.raises(ValueError, match="aha_match must be one of substring, word"):
        fmt.has_aha("wait", match="regex")  # type: ignore[arg-type]


def test_build_split_and_eval_counts_use_one_matcher(tmp_path: Path) -> None:
    from thinkflow.data.split import assign_split

    response = fmt.format_response("Let me re-check the count.", "3")
    assert assign_split({"response": response}, "auto", False) == "rl"  # substring: "check" in "re-check"
    assert assign_split({"response": response}, "auto", False, aha_match="word") == "sft"
    assert fmt.aha_counts(response)["check"] == 1 and fmt.aha_counts(response, match="word")["check"] == 0
