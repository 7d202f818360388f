"""Build to and from an S3 server on loopback (moto): sources on s3://, output on s3://, loader and validate."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from thinkflow import storage
from thinkflow.data import load_split, manifest_hash
from thinkflow.data.build import BuildConfig, run
from thinkflow.data.sources import JsonlSource, SyntheticSource
from thinkflow.data.validate import ValidateConfig
from thinkflow.data.validate import run as validate


def test_build_to_s3_and_read_back(s3: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("THINKFLOW_CACHE", str(tmp_path / "cache"))
    raw = tmp_path / "raw"
    (raw / "imgs").mkdir(parents=True)
    Image.new("RGB", (60, 60), "red").save(raw / "imgs" / "a.png")
    (raw / "d.jsonl").write_text(
        json.dumps({"id": "1", "image": "a.png", "question": "Colour?", "solution": "red"}) + "\n"
    )
    storage.upload(raw / "d.jsonl", "s3://inputs/raw/d.jsonl")
    storage.upload(raw / "imgs", "s3://inputs/raw/imgs")
    out = "s3://datasets/synthetic/v1"
    cfg = BuildConfig(
        output_dir=out,
        sources=[
            SyntheticSource(n=15, seed=3),
            JsonlSource(
                name="raw", path="s3://inputs/raw/d.jsonl", images="s3://inputs/raw/imgs", verifier_type="open"
            ),
        ],
        tracking=False,
        progress=False,
    )
    result = run(cfg)
    assert result.output == out and result.artifacts["manifest"] == f"{out}/manifest.json"
    assert storage.exists(f"{out}/manifest.json") and storage.exists(f"{out}/images")
    assert not storage.exists(f"{out}/.build")  # the journal stays local
    manifest = json.loads(storage.read_text(f"{out}/manifest.json"))
    assert manifest["counts"]["total"] == 16 and manifest_hash(out) == manifest["content_hash"]
    rl = load_split(out, "rl")
    raw_row = [r for r in rl if r["id"] == "raw-1"]
    assert raw_row and raw_row[0]["image"].getpixel((5, 5)) == (255, 0, 0)
    assert validate(ValidateConfig(data=out)).metrics["records"] == 16
    # rebuilt at the same URI with other content: readers get the new dataset, not a stale cached copy
    run(cfg.model_copy(update={"sources": [SyntheticSource(n=5, seed=4)], "work_dir": str(tmp_path / "w2")}))
    assert manifest_hash(out) != manifest["content_hash"]
    assert len(load_split(out, "sft")) == 5  # n=5: one per type, all sft
    assert not storage.exists(f"{out}/rl.jsonl")  # the earlier build's split is gone
