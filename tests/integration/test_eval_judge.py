"""The evaluation's LLM judge against a real OpenAI-compatible server on loopback (`ScriptedTeacher`).

VLMEvalKit's flow (vlmeval/dataset/utils/mathvista.py ``MathVista_auxeval``/``post_check``): a rule-based
prefetch; when that is not already right, the judge extracts the answer and rules compare it with the key.
"""

from __future__ import annotations

import re

import pytest

from thinkflow.evaluate.judge import JudgeConfig, check_reachable, rescore_with_judge
from thinkflow.evaluate.metrics import summarize
from thinkflow.evaluate.score import score_predictions
from thinkflow.rewards import MixedReward
from thinkflow.testing.scripted import Ask, ScriptedTeacher


def _extractor(ask: Ask) -> str:
    """A judge that reports the last 'so it is X' of the response it is shown (NONE when there is none)."""
    response = ask.text.split("Model response:\n", 1)[1]
    found = re.findall(r"so it is ([A-Z0-9.]+)", response)
    return found[-1] if found else "NONE"


def test_judge_extracts_what_rules_miss_and_the_report_names_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    completions = [
        "<think>t</think><answer>B</answer>",  # rules right: kept (prefetch), the judge is not asked
        "<think>t</think><answer>after some thought, so it is B</answer>",  # rules miss, the judge extracts B
        "<think>t</think><answer>after some thought, so it is C</answer>",  # judge extracts C: still wrong
        "I counted, so it is 7",  # no answer tag: the whole response goes to the judge
        "<think>t</think><answer>no idea</answer>",  # judge says NONE
        "<think>t</think><answer>so it is 7</answer>",  # a benchmark the judge does not score: rules only
    ]
    solutions = ["B", "B", "B", "7", "7", "7"]
    types = ["mcq", "mcq", "mcq", "digit", "digit", "digit"]
    benchmarks = ["mathvista"] * 5 + ["dataset"]
    questions = [f"question {i}" for i in range(6)]
    reward = MixedReward()
    rules = score_predictions(completions, solutions, types, reward=reward)
    assert [s.correct for s in rules] == [True, False, False, False, False, False]
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-judge")
    with ScriptedTeacher(_extractor) as srv:
        cfg = JudgeConfig(base_url=srv.url, model="judge-mini", api_key_env="JUDGE_TEST_KEY")
        check_reachable(cfg)
        scored, failures = rescore_with_judge(
            cfg, rules, completions, benchmarks, questions, solutions, types, reward=reward
        )
        asked = sum(srv.served.values())
        auth = srv.authorization
    assert failures == 0 and asked == 4 and auth == "Bearer sk-judge"
    assert [s.correct for s in scored] == [True, True, False, True, False, False]
    assert [s.scored_by for s in scored] == ["rules", "judge", "judge", "judge", "judge", "rules"]
    assert scored[1].answer == "B" and scored[4].answer == "no idea"  # NONE: the rules' reading stays
    preds = [
        {
            "benchmark": b,
            "group": None,
            "verifier_type": t,
            "correct": s.correct,
            "well_formed": s.well_formed,
            "from_answer_tag": s.from_answer_tag,
            "length_tokens": 1,
            "reward": s.reward,
            "aha": {},
            "meta": {},
        }
        for b, t, s in zip(benchmarks, types, scored, strict=True)
    ]
    summary = summarize(preds, {}, [], {"mathvista": "judge (judge-mini)", "dataset": "rules"})
    assert summary["benchmarks"]["mathvista"]["scoring"] == "judge (judge-mini)"
    assert summary["benchmarks"]["mathvista"]["accuracy"] == 3 / 5
    assert summary["benchmarks"]["dataset"]["scoring"] == "rules"


def test_judge_failures_are_counted_and_unreachable_judge_fails_fast() -> None:
    rules = score_predictions(["<answer>maybe so it is B</answer>"], ["B"], ["mcq"])
    with ScriptedTeacher(_extractor, failures=[500] * 10) as srv:
        cfg = JudgeConfig(base_url=srv.url, model="judge-mini", max_retries=1, backoff=0.0)
        scored, failures = rescore_with_judge(
            cfg, rules, ["<answer>maybe so it is B</answer>"], ["wemath"], ["q"], ["B"], ["mcq"]
        )
    assert failures == 1 and not scored[0].correct and scored[0].scored_by == "judge"
    with ScriptedTeacher() as srv:
        url = srv.url
    with pytest.raises(
        ValueError, match=r"judge.base_url http://127.0.0.1:\d+/v1: the judge endpoint is not reachable"
    ):
        check_reachable(JudgeConfig(base_url=url, model="judge-mini", timeout=2.0))
