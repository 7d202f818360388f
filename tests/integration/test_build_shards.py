"""`build --shard I/N` + `data merge` against the scripted teacher: byte-identical to the unsharded build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from thinkflow.data.build import BuildConfig, BuildError, run
from thinkflow.data.build_config import parse_shard, shard_of
from thinkflow.data.merge import MergeConfig
from thinkflow.data.merge import run as merge
from thinkflow.data.scenes import iter_scenes
from thinkflow.data.sources import JsonlSource, SyntheticSource
from thinkflow.records import read_jsonl
from thinkflow.testing.scripted import ScriptedTeacher, SyntheticOracle

N = 40
DUPS = 12
VOLATILE = {"created_at", "seconds", "cpu_seconds", "calls_this_run", "shards"}


def _dup_source(tmp: Path) -> JsonlSource:
    """Records with other ids whose images are byte copies of the first synthetic scenes (cross-shard dupes)."""
    folder = tmp / "dups"
    folder.mkdir()
    rows = []
    for scene in list(iter_scenes(N, 0))[:DUPS]:
        (folder / f"{scene.index}.png").write_bytes(scene.png())
        rows.append(
            {
                "id": f"copy-{scene.index}",
                "image": f"{scene.index}.png",
                "question": scene.question,
                "solution": scene.solution,
                "verifier_type": scene.verifier_type,
            }
        )
    (folder / "dups.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return JsonlSource(name="copies", path=str(folder / "dups.jsonl"))


def _cfg(out: Path, url: str, dups: JsonlSource, **kw: Any) -> BuildConfig:
    base = {"base_url": url, "concurrency": 4, "backoff": 0.01, "backoff_max": 0.02}
    teachers = {
        "caption": {**base, "model": "captioner"},
        "reason": {**base, "model": "reasoner"},
        "rewrite": {**base, "model": "rewriter"},
        "judge": {**base, "model": "judge"},
    }
    sources = [
        dups,  # first: the synthetic scenes 0..11 are the duplicates, each maybe in another shard than its twin
        SyntheticSource(n=N, responses=False),
        SyntheticSource(name="capped", n=30, seed=5, max_samples=10, distill=False),
    ]
    return BuildConfig(
        output_dir=str(out),
        sources=sources,  # type: ignore[arg-type]
        eval_fraction=0.2,
        teachers=teachers,  # type: ignore[arg-type]
        tracking=False,
        progress=False,
        **kw,
    )


def _dataset(out: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    files.update({f"images/{p.name}": p.read_bytes() for p in (out / "images").iterdir()})
    return files


def _manifest(out: Path) -> dict[str, Any]:
    m = json.loads((out / "manifest.json").read_text())
    assert m["build_config"].pop("output_dir") == str(out) and m["build_config"]["shard"] is None
    return {k: v for k, v in m.items() if k not in VOLATILE}


def test_sharded_build_is_byte_identical_to_the_unsharded_one(tmp_path: Path) -> None:
    dups = _dup_source(tmp_path)
    with ScriptedTeacher(SyntheticOracle(N)) as srv:
        ref = tmp_path / "ref"
        run(_cfg(ref, srv.url, dups))
        expected, expected_manifest = _dataset(ref), _manifest(ref)
        rejected = list(read_jsonl(ref / "rejected.jsonl"))
        dup_rows = [r for r in rejected if r["reason"].startswith("duplicate image")]
        assert len(dup_rows) == DUPS and all(r["source"] == "synthetic" for r in dup_rows)
        assert {r["step"] for r in rejected} >= {"collect", "reason", "rewrite", "verify"}
        assert expected_manifest["counts"]["not_sampled"] == {"capped": 20}
        for count in (1, 3, 7):
            shards = []
            for index in range(count):
                shard = tmp_path / f"n{count}" / f"shard-{index}"
                result = run(_cfg(shard, srv.url, dups, shard=f"{index}/{count}"))
                assert result.artifacts["shard"].endswith("shard.jsonl")
                ids = [r["id"] for r in read_jsonl(shard / "shard.jsonl")]
                assert all(shard_of(i, count) == index for i in ids)
                shards.append(str(shard))
            out = tmp_path / f"n{count}" / "merged"
            result = merge(MergeConfig(shards=list(reversed(shards)), output_dir=str(out), tracking=False))
            assert result.metrics["records"] == sum(1 for _ in read_jsonl(ref / "sft.jsonl")) + sum(
                1 for s in ("rl", "eval") for _ in read_jsonl(ref / f"{s}.jsonl")
            )
            assert _dataset(out) == expected, count
            got = _manifest(out)
            tokens = got.pop("tokens")
            want = dict(expected_manifest)
            want_tokens = want.pop("tokens")
            assert got == want, count
            if count == 1:
                assert tokens == want_tokens
            else:  # cross-shard twins were distilled in their shards before the merge dropped them
                assert tokens["total"]["calls"] >= want_tokens["total"]["calls"]
            manifest = json.loads((out / "manifest.json").read_text())
            assert [s["shard"] for s in manifest["shards"]] == [f"{i}/{count}" for i in range(count)]
            assert sum(s["candidates"] for s in manifest["shards"]) == N + DUPS + 10


def test_merge_refuses_incomplete_or_mismatched_shards(tmp_path: Path) -> None:
    def cfg(out: Path, shard: str, n: int = 12) -> BuildConfig:
        return BuildConfig(
            output_dir=str(out), sources=[SyntheticSource(n=n)], shard=shard, tracking=False, progress=False
        )

    for i in range(3):
        run(cfg(tmp_path / f"s{i}", f"{i}/3"))
    run(cfg(tmp_path / "other", "2/3", n=13))
    shards = [str(tmp_path / f"s{i}") for i in range(3)]
    with pytest.raises(BuildError, match=r"missing shard\(s\) 1/3 of 3"):
        merge(MergeConfig(shards=[shards[0], shards[2]], output_dir=str(tmp_path / "o"), tracking=False))
    with pytest.raises(BuildError, match=r"given twice"):
        merge(MergeConfig(shards=[*shards, shards[1]], output_dir=str(tmp_path / "o"), tracking=False))
    with pytest.raises(BuildError, match=r"another config"):
        merge(
            MergeConfig(shards=[*shards[:2], str(tmp_path / "other")], output_dir=str(tmp_path / "o"), tracking=False)
        )
    with pytest.raises(BuildError, match=r"not a build shard"):
        merge(MergeConfig(shards=[str(tmp_path)], output_dir=str(tmp_path / "o"), tracking=False))
    (tmp_path / "s1" / "shard.jsonl").write_text("")
    with pytest.raises(BuildError, match=r"does not match the sha256"):
        merge(MergeConfig(shards=shards, output_dir=str(tmp_path / "o"), tracking=False))
    with pytest.raises(ValueError, match=r"shard must be 'I/N'"):
        parse_shard("3/3")
    with pytest.raises(BuildError, match=r"different config \(differs in: shard\)"):
        run(cfg(tmp_path / "s0", "1/3"))  # a shard's journal is not reused for another shard
