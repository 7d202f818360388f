"""The six steps against a scripted OpenAI-compatible teacher on loopback (deterministic answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from thinkflow.data.build import BuildConfig, BuildError, run
from thinkflow.data.sources import JsonlSource, SyntheticSource
from thinkflow.format import has_aha, response_parts
from thinkflow.records import read_jsonl
from thinkflow.testing.scripted import Ask, ScriptedTeacher, SyntheticOracle

N = 60


def _teachers(url: str, **kw: Any) -> dict[str, Any]:
    base = {"base_url": url, "concurrency": 8, "backoff": 0.01, "backoff_max": 0.02, **kw}
    return {
        "caption": {**base, "model": "captioner"},
        "reason": {**base, "model": "reasoner"},
        "rewrite": {**base, "model": "rewriter"},
        "judge": {**base, "model": "judge"},
    }


def _cfg(out: Path, url: str, **kw: Any) -> BuildConfig:
    teacher_kw = kw.pop("teacher_kw", {})
    return BuildConfig(
        output_dir=str(out),
        sources=[SyntheticSource(n=N, responses=False)],
        eval_fraction=0.1,
        teachers=_teachers(url, **teacher_kw),
        tracking=False,
        progress=False,
        **kw,
    )


def _outputs(out: Path) -> dict[str, dict[str, Any]]:
    rows = {}
    for split in ("sft", "rl", "eval"):
        if (out / f"{split}.jsonl").exists():
            rows.update({r["id"]: r for r in read_jsonl(out / f"{split}.jsonl")})
    return rows


def _expected_fate(i: int) -> str:
    if i % 11 == 5:
        return "reason"
    if i % 12 == 2:
        return "rewrite"
    if i % 7 == 3:
        return "verify"
    return "kept"


def test_six_steps_end_to_end_and_rerun_makes_no_call(tmp_path: Path) -> None:
    oracle = SyntheticOracle(N)
    out = tmp_path / "ds"
    with ScriptedTeacher(oracle) as srv:
        result = run(_cfg(out, srv.url))
        assert not srv.errors
        assert max(srv.served.values()) == 1  # no request was ever served twice
        rows = _outputs(out)
        rejected = {r["id"]: r for r in read_jsonl(out / "rejected.jsonl")}
        for scene in oracle.scenes:
            fate = _expected_fate(scene.index)
            if fate == "kept":
                assert scene.id in rows, scene.index
            else:
                assert rejected[scene.id]["step"] == fate, (scene.index, rejected.get(scene.id))
        assert len(rows) + len(rejected) == N
        for scene in oracle.scenes:
            row = rows.get(scene.id)
            if row is None:
                continue
            reasoning, _ = response_parts(row["response"])
            assert "caption" not in reasoning.lower()
            assert row["caption"].startswith("Scene ")
            assert row["meta"]["teachers"]["caption"] == "captioner" and row["meta"]["teachers"]["reason"] == "reasoner"
            assert row["meta"]["tokens"]["reason"]["completion"] > 0
            assert row["meta"]["verified_by"] == ("judge" if scene.verifier_type == "open" else "rule")
            if row["split"] != "eval":
                assert row["split"] == ("rl" if scene.index % 4 == 1 else "sft")
                assert has_aha(row["response"]) == (row["split"] == "rl")
        reasons = {r["reason"] for r in rejected.values()}
        assert "reasoning output has no <think>…</think> reasoning" in reasons
        assert "rewrite: word count of the answer changed by 19 (> 15)" in reasons
        assert any(r.startswith("verify (rule ") for r in reasons) and "verify (judge): judged incorrect" in reasons
        manifest = json.loads((out / "manifest.json").read_text())
        tokens = manifest["tokens"]
        assert tokens["total"]["prompt"] == srv.prompt_tokens and tokens["total"]["completion"] == srv.completion_tokens
        assert tokens["caption"]["calls"] == N and tokens["total"]["calls"] == sum(srv.served.values())
        assert manifest["teachers"]["reason"] == {
            "model": "reasoner",
            "base_url": srv.url,
            "served_models": ["reasoner"],
        }
        assert manifest["counts"]["rejected_by_step"] == {
            step: sum(1 for i in range(N) if _expected_fate(i) == step) for step in ("reason", "rewrite", "verify")
        }
        assert result.metrics["calls_total"] == sum(srv.served.values())
        served_before = dict(srv.served)
        files = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
        run(_cfg(out, srv.url))
        assert dict(srv.served) == served_before  # everything came from the journals
        assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == files


def test_failed_teacher_calls_fail_the_build_and_a_rerun_retries_only_them(tmp_path: Path) -> None:
    oracle = SyntheticOracle(N)
    broken = {"on": True}

    def respond(ask: Ask) -> Any:
        if ask.model == "reasoner" and broken["on"] and oracle.by_tag[ask.text.split("Scene ")[1][:12]].index % 3 == 0:
            raise RuntimeError("reasoner overloaded")
        return oracle(ask)

    out = tmp_path / "ds"
    with ScriptedTeacher(respond) as srv:
        with pytest.raises(
            BuildError, match=r"step reason: 20 of 60 records failed after retries .*run the build again"
        ):
            run(_cfg(out, srv.url, teacher_kw={"max_retries": 1}))
        assert len(list(read_jsonl(out / ".build" / "3-reason.jsonl"))) == 40
        broken["on"] = False
        run(_cfg(out, srv.url, teacher_kw={"max_retries": 1}))
        assert max(srv.served.values()) == 1  # captions and the 40 finished reasonings were not asked again
        assert srv.served_per_model["captioner"] == N and srv.served_per_model["reasoner"] == N
        reference = tmp_path / "ref"
        run(_cfg(reference, srv.url))
    assert (out / "sft.jsonl").read_bytes() == (reference / "sft.jsonl").read_bytes()


def test_on_teacher_error_reject_and_non_retryable_errors(tmp_path: Path) -> None:
    oracle = SyntheticOracle(N)
    with ScriptedTeacher(oracle, failures=[500, 500]) as srv:
        run(_cfg(tmp_path / "a", srv.url, on_teacher_error="reject", teacher_kw={"max_retries": 1}))
    rejected = list(read_jsonl(tmp_path / "a" / "rejected.jsonl"))
    assert len(rejected) == N and all(r["step"] == "caption" and "HTTP 500" in r["reason"] for r in rejected)
    with ScriptedTeacher(oracle, failures=[400]) as srv:
        run(_cfg(tmp_path / "b", srv.url))
    rejected = list(read_jsonl(tmp_path / "b" / "rejected.jsonl"))
    assert len(rejected) == N and all("HTTP 400" in r["reason"] for r in rejected)


def test_text_questions_extras_and_separate_reasoning(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (50, 50), "white").save(tmp_path / "a.png")
    Image.new("RGB", (50, 50), "black").save(tmp_path / "b.png")
    rows = [
        {"id": 1, "image": "a.png", "question": "How many dots?", "solution": "4", "scene": "four red dots"},
        {"id": 2, "image": "b.png", "question": "What is y?", "solution": "7", "text": "If y - 2 = 5, what is y?"},
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    prompts: dict[str, list[str]] = {}

    def respond(ask: Ask) -> Any:
        prompts.setdefault(ask.model, []).append(ask.text)
        if ask.model == "captioner":
            return "Four dots."
        if ask.model == "reasoner":
            answer = "4" if "How many dots" in ask.text else "7"
            return {"content": f"**Answer:** {answer}", "reasoning_content": "Counting carefully."}
        return "Yes"

    src = JsonlSource(
        name="t", path=str(tmp_path / "d.jsonl"), verifier_type="digit", extras="scene", text_question="text"
    )
    out = tmp_path / "o"
    with ScriptedTeacher(respond) as srv:
        cfg = BuildConfig(
            output_dir=str(out),
            sources=[src],
            teachers=_teachers(srv.url),
            eval_fraction=0.0,
            tracking=False,
            progress=False,
        )
        run(cfg)
    assert len(prompts["captioner"]) == 1 and "four red dots" in prompts["captioner"][0]
    text_prompt = next(p for p in prompts["reasoner"] if "y - 2 = 5" in p)
    assert "What you see in the image" not in text_prompt
    image_prompt = next(p for p in prompts["reasoner"] if "How many dots" in p)
    assert "Four dots." in image_prompt
    rows_out = _outputs(out)
    assert rows_out["t-1"]["response"] == "<think>Counting carefully.</think><answer>4</answer>"
    assert rows_out["t-2"]["response"].endswith("<answer>7</answer>") and "caption" not in rows_out["t-2"]
    assert "rewriter" not in prompts and "judge" not in prompts  # no caption mention; digit is rule-verified


def test_unreachable_teacher_fails_fast_and_a_finished_build_needs_none(tmp_path: Path) -> None:
    from thinkflow.testing import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BuildError, match=r"step caption: teacher caption: cannot reach .* is the server running\?"):
        run(_cfg(tmp_path / "a", dead))
    out = tmp_path / "b"
    with ScriptedTeacher(SyntheticOracle(N)) as srv:
        run(_cfg(out, srv.url))
    before = (out / "sft.jsonl").read_bytes()
    # the teachers are gone; the journals hold every call, so a re-split needs no teacher
    cfg = _cfg(out, dead).model_copy(update={"eval_fraction": 0.2})
    run(cfg)
    assert (out / "sft.jsonl").read_bytes() != before
