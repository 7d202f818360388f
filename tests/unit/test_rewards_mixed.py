"""The mixed reward: TRL's reward-function contract, metrics, validation, extras, score, score_file, CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from thinkflow.records import VERIFIER_TYPES
from thinkflow.rewards import (
    VERIFIERS,
    MixedReward,
    RewardConfig,
    RewardInputError,
    UnknownVerifierError,
    check_solution,
    mixed_reward,
    score,
    score_file,
    validate_verifier_type,
)

BATCH = {
    "completions": [
        "<think>3 circles</think><answer>3</answer>",
        "<think>hmm</think><answer>31</answer>",
        "<think>B is wrong</think><answer>C) the blue one</answer>",
        "<think>so</think><answer>\\frac{2}{4}</answer>",
        "<think>the answer is 0.5 but I never close",
        "<think>box</think><answer>[0, 0, 10, 10]</answer>",
    ],
    "solution": [3, "3", "(C)", "0.5", "0.5", "[0, 0, 10, 20]"],
    "verifier_type": ["digit", "digit", "mcq", "math", "math", "iou"],
}
EXPECTED = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5]


def test_registry_matches_the_record_schema() -> None:
    assert tuple(VERIFIERS) == VERIFIER_TYPES


def test_trl_signature_with_string_completions() -> None:
    rewards = mixed_reward(prompts=["q"] * 6, **BATCH)
    assert rewards == pytest.approx(EXPECTED)


def test_trl_signature_with_conversational_completions_and_trl_kwargs() -> None:
    completions = [[{"role": "assistant", "content": c}] for c in BATCH["completions"]]
    prompts = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]] * 6
    rewards = mixed_reward(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2, 3]] * 6,
        solution=BATCH["solution"],
        verifier_type=BATCH["verifier_type"],
        trainer_state=object(),
        id=[str(i) for i in range(6)],
    )
    assert rewards == pytest.approx(EXPECTED)


def test_reports_per_verifier_means_and_format_failures_through_trl_hooks() -> None:
    metrics: dict[str, list[float]] = defaultdict(list)
    extra: dict[str, list[Any]] = defaultdict(list)
    mixed_reward(
        prompts=["q"] * 6,
        log_metric=lambda name, value: metrics[name].append(value),
        log_extra=lambda column, values: extra[column].extend(values),
        **BATCH,
    )
    assert {k: v[0] for k, v in metrics.items()} == pytest.approx(
        {
            "mixed_reward/digit/accuracy": 0.5,
            "mixed_reward/mcq/accuracy": 1.0,
            "mixed_reward/math/accuracy": 0.5,
            "mixed_reward/iou/accuracy": 0.5,
            "mixed_reward/format_failure": 1 / 6,
        }
    )
    assert extra["verifier_type"] == BATCH["verifier_type"]
    assert extra["answer"][4] is None and extra["answer"][0] == "3"


def test_unknown_verifier_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownVerifierError, match=r"'ocr'.*known: digit, mcq, math, iou, open"):
        validate_verifier_type("ocr", where="data.jsonl:7")
    with pytest.raises(UnknownVerifierError, match=r"data\.jsonl:7"):
        validate_verifier_type("ocr", where="data.jsonl:7")
    with pytest.raises(UnknownVerifierError, match="dataset row 1"):
        MixedReward().check(["math", "ocr"])
    with pytest.raises(UnknownVerifierError, match="'ocr'"):
        mixed_reward(prompts=["q"], completions=["<answer>1</answer>"], solution=["1"], verifier_type=["ocr"])
    assert validate_verifier_type("iou") == "iou"


def test_check_solution() -> None:
    assert check_solution("mcq", "(B)") is None
    assert check_solution("digit", 4) is None
    assert check_solution("iou", "[1, 2, 3, 4]") is None
    assert check_solution("math", "\\frac12") is None
    assert check_solution("open", "a cat") is None
    assert check_solution("mcq", "blue") is not None
    assert check_solution("open", "") is not None
    with pytest.raises(UnknownVerifierError):
        check_solution("nope", "1")


def test_explicit_format_reward_is_off_by_default_and_weighted_when_on() -> None:
    well = "<think>r</think><answer>3</answer>"
    sloppy = "text <answer>3</answer>"
    assert mixed_reward(completions=[well, sloppy], solution=[3, 3], verifier_type=["digit"] * 2) == [1.0, 1.0]
    weighted = MixedReward(RewardConfig(format_weight=0.5))
    assert weighted(completions=[well, sloppy], solution=[3, 3], verifier_type=["digit"] * 2) == [1.5, 1.0]


def test_soft_overlong_penalty() -> None:
    reward = MixedReward(RewardConfig(overlong_max_tokens=10, overlong_buffer=4, overlong_penalty=1.0))
    completions = ["<answer>3</answer>"] * 4
    ids = [[0] * n for n in (6, 8, 10, 12)]
    out = reward(completions=completions, completion_ids=ids, solution=[3] * 4, verifier_type=["digit"] * 4)
    assert out == pytest.approx([1.0, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="length in tokens"):
        reward(completions=completions, solution=[3] * 4, verifier_type=["digit"] * 4)


def test_score_one_completion() -> None:
    assert score("<think>t</think><answer>(B)</answer>", "B", "mcq") == 1.0
    assert score("<answer>[0, 0, 0.5, 0.5]</answer>", "[0, 0, 100, 50]", "iou", image_size=(200, 100)) == 1.0
    assert score("<answer>3</answer>", "3", "digit", config=RewardConfig(format_weight=1.0)) == 1.0
    assert score("The answer is 3", "3", "digit") == 0.0


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows() -> list[dict[str, Any]]:
    return [
        {"completion": c, "solution": s, "verifier_type": v, "id": i}
        for i, (c, s, v) in enumerate(zip(BATCH["completions"], BATCH["solution"], BATCH["verifier_type"], strict=True))
    ]


def test_score_file_keeps_order_and_count(tmp_path: Path) -> None:
    rows = _rows() * 50  # several chunks
    src = _write(tmp_path / "in.jsonl", rows)
    summary = score_file(src, tmp_path / "out" / "scored.jsonl", chunk_size=64, progress=False)
    out = [json.loads(line) for line in (tmp_path / "out" / "scored.jsonl").read_text().splitlines()]
    assert len(out) == len(rows)
    assert [{k: v for k, v in o.items() if k != "reward"} for o in out] == rows
    assert [o["reward"] for o in out] == pytest.approx(EXPECTED * 50)
    table = summary.to_dict()
    assert table["digit"] == {"count": 100, "mean_reward": 0.5, "format_failure_rate": 0.0}
    assert table["math"]["format_failure_rate"] == 0.5
    assert table["all"]["count"] == 300


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"completion": "x", "solution": "1"}', "in.jsonl:2: missing field 'verifier_type'"),
        ('{"completion": "x", "solution": "1", "verifier_type": "ocr"}', "in.jsonl:2: unknown verifier_type 'ocr'"),
        ("not json", "in.jsonl:2: not valid JSON"),
        ("[1, 2]", "in.jsonl:2: expected a JSON object"),
        ('{"completion": "x", "solution": "1", "verifier_type": "open", "question": "q"}', "needs a reward model"),
        ('{"completion": 5, "solution": "1", "verifier_type": "digit"}', "'completion' must be a string"),
    ],
)
def test_score_file_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(_rows()[0]) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(RewardInputError, match=message.replace("(", r"\(")):
        score_file(src, tmp_path / "out.jsonl", progress=False)
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_rewards_score(tmp_path: Path) -> None:
    from thinkflow.cli import app

    src = _write(tmp_path / "in.jsonl", _rows())
    result = CliRunner().invoke(app, ["rewards", "score", str(src), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    assert "digit" in result.output and "mean reward" in result.output
    out = [json.loads(line)["reward"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == pytest.approx(EXPECTED)

    weighted = CliRunner().invoke(
        app, ["rewards", "score", str(src), "-o", str(tmp_path / "w.jsonl"), "--set", "format_weight=1.0"]
    )
    assert weighted.exit_code == 0, weighted.output
    out = [json.loads(line)["reward"] for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert out == pytest.approx([e + (1.0 if i != 4 else 0.0) for i, e in enumerate(EXPECTED)])

    bad = _write(tmp_path / "bad.jsonl", [{"completion": "x", "solution": "1", "verifier_type": "ocr"}])
    failed = CliRunner().invoke(app, ["rewards", "score", str(bad), "-o", str(tmp_path / "b.jsonl")])
    assert failed.exit_code == 1 and "unknown verifier_type 'ocr'" in failed.output
    unknown_key = CliRunner().invoke(app, ["rewards", "score", str(src), "-o", "x.jsonl", "--set", "bogus=1"])
    assert unknown_key.exit_code == 2 and "bogus" in unknown_key.output
