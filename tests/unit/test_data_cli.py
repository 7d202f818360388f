"""The data commands: build, data synth / validate / import-vlaa, print-config."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from thinkflow.cli import app
from thinkflow.records import read_jsonl

runner = CliRunner()


def _flat(text: str) -> str:
    """Command output without rich's line wrapping."""
    return " ".join(text.split())


def test_build_with_preset_and_print_config(tmp_path: Path) -> None:
    out = tmp_path / "d"
    res = runner.invoke(app, ["build", "--config", "tiny-data", "--set", f"output_dir={out}", "--print-config"])
    assert res.exit_code == 0 and f"output_dir: {out}" in res.output and "kind: synthetic" in res.output
    res = runner.invoke(
        app,
        [
            "build",
            "-c",
            "tiny-data",
            "--set",
            f"output_dir={out}",
            "--set",
            "tracking=false",
            "--set",
            "sources=[{kind: synthetic, n: 15}]",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "15 records" in _flat(res.output) and (out / "manifest.json").exists()
    res = runner.invoke(app, ["build", "--set", "output_dir=x", "--set", "dedupe=sometimes"])
    assert res.exit_code == 2 and "dedupe" in res.output


def test_synth_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = runner.invoke(app, ["data", "synth", "--n", "10", "--seed", "2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    files = [out / f"{s}.jsonl" for s in ("sft", "rl", "eval") if (out / f"{s}.jsonl").exists()]
    assert sum(len(list(read_jsonl(f))) for f in files) == 10
    res = runner.invoke(app, ["data", "validate", str(out)])
    assert res.exit_code == 0 and "10 records, 0 bad" in _flat(res.output)
    rows = list(read_jsonl(out / "rl.jsonl"))
    rows[0]["solution"] = "[1, 2]" if rows[0]["verifier_type"] == "iou" else rows[0]["solution"]
    rows[0]["verifier_type"] = "iou"
    (out / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = runner.invoke(app, ["data", "validate", str(out), "--no-images"])
    assert res.exit_code == 1
    assert rows[0]["id"] in _flat(res.output) and "field 'solution'" in _flat(res.output)


def test_import_vlaa_command(tmp_path: Path) -> None:
    (tmp_path / "images" / "clevr_math").mkdir(parents=True)
    Image.new("RGB", (40, 40), "red").save(tmp_path / "images" / "clevr_math" / "a.png")
    sft = tmp_path / "VLAA-Thinking-SFT-126K.json"
    sft.write_text(
        json.dumps(
            [
                {
                    "id": "clevr_math-a",
                    "image": "clevr_math/a.png",
                    "question": "How many?",
                    "gt": 1,
                    "ds_answer": "<think>one</think>\n**Answer:** 1",
                }
            ]
        )
    )
    out = tmp_path / "o"
    args = ["data", "import-vlaa", "--json", str(sft), "--images", str(tmp_path / "images"), "-o", str(out)]
    res = runner.invoke(app, [*args, "--set", "tracking=false"])
    assert res.exit_code == 0, res.output
    row = next(read_jsonl(out / "sft.jsonl"))
    assert row["response"] == "<think>one</think><answer>1</answer>" and row["verifier_type"] == "digit"
    res = runner.invoke(app, [*args, "--print-config"])
    assert res.exit_code == 0 and "kind: vlaa" in res.output
    bad = tmp_path / "data.json"
    bad.write_text("[]")
    res = runner.invoke(app, ["data", "import-vlaa", "--json", str(bad), "--images", str(tmp_path), "-o", str(out)])
    assert res.exit_code == 2 and "SFT or the GRPO file" in _flat(res.output)


def test_build_shards_and_data_merge(tmp_path: Path) -> None:
    base = ["-c", "tiny-data", "--set", "tracking=false", "--set", "sources=[{kind: synthetic, n: 14}]"]
    res = runner.invoke(app, ["build", *base, "--set", f"output_dir={tmp_path / 'ref'}"])
    assert res.exit_code == 0, res.output
    shards = []
    for i in range(2):
        shards.append(str(tmp_path / f"s{i}"))
        res = runner.invoke(app, ["build", *base, "--set", f"output_dir={shards[-1]}", "--shard", f"{i}/2"])
        assert res.exit_code == 0 and "shard built" in _flat(res.output), res.output
    res = runner.invoke(app, ["data", "merge", *shards, "-o", str(tmp_path / "m"), "--set", "tracking=false"])
    assert res.exit_code == 0 and "dataset merged" in _flat(res.output), res.output
    for name in ("sft.jsonl", "rl.jsonl", "eval.jsonl", "rejected.jsonl"):
        assert (tmp_path / "m" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    res = runner.invoke(app, ["data", "merge", shards[0], "-o", str(tmp_path / "x"), "--set", "tracking=false"])
    assert res.exit_code == 1 and "missing shard(s) 1/2 of 2" in _flat(res.output)
    res = runner.invoke(app, ["build", *base, "--set", f"output_dir={tmp_path / 'y'}", "--shard", "2/2"])
    assert res.exit_code == 2 and "shard must be 'I/N'" in _flat(res.output)
