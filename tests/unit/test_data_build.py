"""The build without teachers: step 1 (collect), step 6 (split), journal resume, manifest, loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from thinkflow.config import load_config
from thinkflow.data import load_split, manifest_hash
from thinkflow.data.build import BuildConfig, BuildError, run
from thinkflow.data.sources import SyntheticSource
from thinkflow.data.synthetic import generate
from thinkflow.records import SYSTEM_PROMPT, read_jsonl


def _cfg(out: Path, **kw: object) -> BuildConfig:
    kw.setdefault("sources", [SyntheticSource(n=30, seed=1)])
    return BuildConfig(output_dir=str(out), tracking=False, progress=False, **kw)  # type: ignore[arg-type]


def _files(out: Path) -> dict[str, bytes]:
    return {
        n: (out / n).read_bytes()
        for n in ("sft.jsonl", "rl.jsonl", "eval.jsonl", "rejected.jsonl")
        if (out / n).exists()
    }


def test_tiny_data_preset_builds_the_embedded_default(tmp_path: Path) -> None:
    cfg = load_config(BuildConfig, "tiny-data", [f"output_dir={tmp_path / 'd'}", "tracking=false", "progress=false"])
    result = run(cfg)
    assert result.stage == "build" and result.output == str(tmp_path / "d")
    assert result.metrics["records"] == 250 and result.metrics["rejected"] == 0
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["counts"]["verifier_type"] == {t: 50 for t in ("digit", "iou", "math", "mcq", "open")}
    assert manifest["counts"]["split"] == {"eval": 50, "rl": 100, "sft": 100}
    assert manifest["tokens"]["total"] == {"calls": 0, "prompt": 0, "completion": 0, "attempts": 0}
    assert manifest["build_config"]["sources"][0]["kind"] == "synthetic"
    assert manifest_hash(str(tmp_path / "d")) == manifest["content_hash"].strip()
    assert set(result.artifacts) == {"manifest", "rejected", "sft", "rl", "eval"}


def test_generate_is_deterministic_and_rerun_is_idempotent(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(str(a), 25, seed=4)
    generate(str(b), 25, seed=4)
    assert _files(a) == _files(b)
    assert manifest_hash(str(a)) == manifest_hash(str(b))
    before = (a / ".build" / "1-collect.jsonl").read_bytes()
    generate(str(a), 25, seed=4)  # everything journaled: nothing redone
    assert (a / ".build" / "1-collect.jsonl").read_bytes() == before
    assert manifest_hash(str(a)) == manifest_hash(str(b))
    assert sorted(p.name for p in (a / "images").iterdir()) == sorted(p.name for p in (b / "images").iterdir())


def test_resume_after_a_torn_collect_journal(tmp_path: Path) -> None:
    ref, out = tmp_path / "ref", tmp_path / "out"
    run(_cfg(ref))
    run(_cfg(out))
    journal = out / ".build" / "1-collect.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:11]) + lines[11][:40])  # killed in the middle of a write
    for name in ("sft.jsonl", "rl.jsonl", "eval.jsonl", "manifest.json"):
        (out / name).unlink()
    run(_cfg(out))
    assert _files(out) == _files(ref)
    keys = [e["key"] for e in read_jsonl(journal)]
    assert len(keys) == len(set(keys)) == 30


def test_sampling_cap_and_dedupe(tmp_path: Path) -> None:
    out = tmp_path / "o"
    sources = [SyntheticSource(n=30, seed=2, max_samples=12), SyntheticSource(name="again", n=10, seed=2)]
    run(_cfg(out, sources=sources))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["source"]["synthetic"] == 12
    assert manifest["counts"]["not_sampled"] == {"synthetic": 18}
    rejected = list(read_jsonl(out / "rejected.jsonl"))
    # "again" draws the same first 10 scenes: those the capped first source sampled are duplicates
    # (rejected), the others are new and kept under "again"
    dup = [r for r in rejected if r["reason"].startswith("duplicate")]
    assert dup and all(r["source"] == "again" and r["step"] == "collect" for r in dup)
    kept_again = manifest["counts"]["source"].get("again", 0)
    assert kept_again + len(dup) == 10
    again = tmp_path / "o2"
    run(_cfg(again, sources=sources))
    assert _files(again) == _files(out)  # the cap samples by seed


def test_changed_config_refuses_the_old_journal(tmp_path: Path) -> None:
    run(_cfg(tmp_path / "o"))
    with pytest.raises(BuildError, match=r"different config \(differs in: sources\)"):
        run(_cfg(tmp_path / "o", sources=[SyntheticSource(n=31, seed=1)]))
    run(_cfg(tmp_path / "o", eval_fraction=0.3))  # step 6 settings may change: re-split, no redo


def test_auto_split_eval_per_type_and_aha_rule(tmp_path: Path) -> None:
    out = tmp_path / "o"
    run(_cfg(out, sources=[SyntheticSource(n=50, split="auto")], eval_fraction=0.2))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["by_split"]["eval"]["verifier_type"] == {
        t: 2 for t in ("digit", "iou", "math", "mcq", "open")
    }
    for row in read_jsonl(out / "rl.jsonl"):
        assert row["meta"]["aha"] is True
    for row in read_jsonl(out / "sft.jsonl"):
        assert row["meta"]["aha"] is False
    ids = [r["id"] for s in ("sft", "rl", "eval") for r in read_jsonl(out / f"{s}.jsonl")]
    assert len(ids) == len(set(ids)) == 50


def test_forced_sft_without_response_is_rejected_and_distill_needs_teachers(tmp_path: Path) -> None:
    out = tmp_path / "o"
    run(_cfg(out, sources=[SyntheticSource(n=5, responses=False, split="sft")]))
    assert not (out / "sft.jsonl").exists()
    assert {r["reason"] for r in read_jsonl(out / "rejected.jsonl")} == {"split sft needs a response"}
    with pytest.raises(BuildError, match=r"distill: true but teachers.reason is not set"):
        run(_cfg(tmp_path / "p", sources=[SyntheticSource(n=5, responses=False, distill=True)]))


def test_load_split_shape(tmp_path: Path) -> None:
    out = tmp_path / "o"
    run(
        _cfg(
            out,
            sources=[SyntheticSource(n=20), SyntheticSource(name="plain", n=10, seed=9, responses=False, split="rl")],
        )
    )
    sft = load_split(str(out), "sft")
    assert sft.column_names == ["id", "question", "solution", "verifier_type", "image", "prompt", "completion"]
    row = sft[0]
    assert row["image"].mode == "RGB" and row["image"].size[0] >= 112
    assert row["prompt"][0] == {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}
    assert row["prompt"][1]["content"][0]["type"] == "image"
    assert row["prompt"][1]["content"][1] == {"type": "text", "text": row["question"]}
    assert row["completion"][0]["role"] == "assistant"
    assert row["completion"][0]["content"][0]["text"].startswith("<think>")
    rl = load_split(str(out), "rl")
    plain = [r for r in rl if r["id"].startswith("synthetic-s9")]
    assert plain and all(r["completion"] is None for r in plain)
    with pytest.raises(ValueError, match="unknown split"):
        load_split(str(out), "train")
    shutil.rmtree(out / "images")
    with pytest.raises(FileNotFoundError, match="image not found"):
        load_split(str(out), "eval")


def test_tracking_logs_a_stage_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("THINKFLOW_PARENT_RUN_ID", raising=False)
    out = tmp_path / "o"
    result = run(BuildConfig(output_dir=str(out), sources=[SyntheticSource(n=10)], progress=False))
    assert result.mlflow_run_id
    logged = mlflow.get_run(result.mlflow_run_id)
    assert logged.data.metrics["records"] == 10
    assert logged.data.tags["thinkflow.stage"] == "build"
    assert logged.data.tags["thinkflow.content_hash"] == manifest_hash(str(out))


def test_output_is_the_deprecated_spelling_of_output_dir(tmp_path: Path) -> None:
    from thinkflow.data.merge import MergeConfig

    with pytest.warns(DeprecationWarning, match="'output' is deprecated, use 'output_dir'"):
        cfg = BuildConfig.model_validate({"output": str(tmp_path / "d")})
    assert cfg.output_dir == str(tmp_path / "d")
    with pytest.warns(DeprecationWarning, match="'output' is deprecated, use 'output_dir'"):
        merge = MergeConfig.model_validate({"shards": ["s0"], "output": str(tmp_path / "m")})
    assert merge.output_dir == str(tmp_path / "m")
    for preset in ("tiny-build", "tiny-data", "vlaa-distill-open", "vlaa-distill-paper"):
        assert load_config(BuildConfig, preset).output_dir  # the presets use the current spelling (no warning)
