"""`thinkflow data validate`: schema, images, boxes, verifier types, responses, manifest integrity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinkflow.data.synthetic import generate
from thinkflow.data.validate import DataValidationError, ValidateConfig, check, run
from thinkflow.records import read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("v") / "ds"
    generate(str(out), 20, seed=3)
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".build"))
    return dst


def test_valid_dataset_passes(dataset: Path) -> None:
    result = run(ValidateConfig(data=str(dataset)))
    assert result.metrics == {"records": 20.0, "bad_records": 0.0, "bad_fraction": 0.0, "problems": 0.0}


def test_bad_records_are_named(dataset: Path, tmp_path: Path) -> None:
    ds = _copy(dataset, tmp_path / "ds")
    rows = list(read_jsonl(ds / "rl.jsonl"))
    iou = next(r for r in rows if r["verifier_type"] == "iou")
    iou["solution"] = "[0.5, 0.5, 0.2, 0.9]"
    mcq = next(r for r in rows if r["verifier_type"] == "mcq")
    mcq["verifier_type"] = "riddle"
    digit = next(r for r in rows if r["verifier_type"] == "digit")
    (ds / digit["image"]).unlink()
    math = next(r for r in rows if r["verifier_type"] == "math")
    math["response"] = "no tags"
    math["split"] = "sft"
    write_jsonl(ds / "rl.jsonl", rows)
    (ds / "manifest.json").unlink()
    report = check(ValidateConfig(data=str(ds)))
    text = "\n".join(str(p) for p in report.problems)
    assert f"id={iou['id']!r}: field 'solution': box [0.5, 0.5, 0.2, 0.9] is empty or inverted" in text
    assert f"id={mcq['id']!r}: field 'verifier_type'" in text
    assert f"id={digit['id']!r}: field 'image': image not found" in text
    assert f"id={math['id']!r}: field 'split' is 'sft' in rl.jsonl" in text
    assert "response is not <think>" in text or "has no <think>" in text
    assert len(report.bad_ids) == 4
    with pytest.raises(DataValidationError, match=r"4 of 20 records are bad \(20.0% > max_bad_fraction 0.0%\)"):
        run(ValidateConfig(data=str(ds)))
    assert run(ValidateConfig(data=str(ds), max_bad_fraction=0.25)).metrics["bad_records"] == 4


def test_manifest_mismatch_fails(dataset: Path, tmp_path: Path) -> None:
    ds = _copy(dataset, tmp_path / "ds")
    with open(ds / "sft.jsonl", "a") as fh:
        fh.write("\n")
    with pytest.raises(DataValidationError, match=r"sft\.jsonl does not match the sha256 in manifest\.json"):
        run(ValidateConfig(data=str(ds), max_bad_fraction=1.0))


def test_broken_json_and_empty_dir(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ds.mkdir()
    with pytest.raises(DataValidationError, match="no split files"):
        run(ValidateConfig(data=str(ds)))
    (ds / "eval.jsonl").write_text('{"id": "x"\n')
    report = check(ValidateConfig(data=str(ds)))
    assert "eval.jsonl:1" in str(report.problems[0]) and "not valid JSON" in str(report.problems[0])
    (ds / "eval.jsonl").write_text(json.dumps({"id": "y", "image": "a.png", "question": "q", "solution": "1"}) + "\n")
    report = check(ValidateConfig(data=str(ds), check_images=False))
    assert "field 'verifier_type': Field required" in str(report.problems[0])


def test_rehash_refreshes_the_manifest_after_a_deliberate_edit(dataset: Path, tmp_path: Path) -> None:
    ds = _copy(dataset, tmp_path / "ds")
    before = json.loads((ds / "manifest.json").read_text(encoding="utf-8"))
    # nothing edited: the manifest already matches (the same content hash formula as the build's)
    unchanged = run(ValidateConfig(data=str(ds), rehash=True))
    assert unchanged.metrics["rehashed"] == 0.0
    assert json.loads((ds / "manifest.json").read_text(encoding="utf-8")) == before
    rows = list(read_jsonl(ds / "sft.jsonl"))
    write_jsonl(ds / "sft.jsonl", rows[1:])  # a hand edit: one record dropped
    with pytest.raises(DataValidationError, match=r"sft\.jsonl does not match the sha256.*--rehash"):
        run(ValidateConfig(data=str(ds)))
    result = run(ValidateConfig(data=str(ds), rehash=True))
    assert result.metrics["rehashed"] == 1.0 and result.metrics["records"] == 19.0
    after = json.loads((ds / "manifest.json").read_text(encoding="utf-8"))
    n = before["files"]["sft.jsonl"]["records"]
    assert after["files"]["sft.jsonl"]["records"] == n - 1 == after["counts"]["split"]["sft"]
    assert after["counts"]["total"] == before["counts"]["total"] - 1
    assert after["files"]["rl.jsonl"] == before["files"]["rl.jsonl"]
    assert after["content_hash"] != before["content_hash"]
    entry = after["rehashed"][-1]
    assert entry["previous_content_hash"] == before["content_hash"]
    assert f"sft.jsonl: {n} -> {n - 1} records" in entry["changes"][0]
    assert any(c.startswith(f"content_hash {before['content_hash']} -> sha256:") for c in entry["changes"])
    assert run(ValidateConfig(data=str(ds))).metrics["problems"] == 0.0  # valid again without --rehash


def test_rehash_does_not_bless_bad_records_or_remote_data(dataset: Path, tmp_path: Path) -> None:
    ds = _copy(dataset, tmp_path / "ds")
    manifest = (ds / "manifest.json").read_bytes()
    rows = list(read_jsonl(ds / "rl.jsonl"))
    rows[0]["verifier_type"] = "riddle"
    write_jsonl(ds / "rl.jsonl", rows)
    with pytest.raises(DataValidationError, match="1 of 20 records are bad"):
        run(ValidateConfig(data=str(ds), rehash=True))
    assert (ds / "manifest.json").read_bytes() == manifest
    with pytest.raises(DataValidationError, match="--rehash refreshes a local dataset folder"):
        run(ValidateConfig(data="s3://bucket/ds", rehash=True))


def test_cli_rehash_says_what_changed(dataset: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from thinkflow.cli import app

    ds = _copy(dataset, tmp_path / "ds")
    rows = list(read_jsonl(ds / "eval.jsonl"))
    write_jsonl(ds / "eval.jsonl", rows[:-1])
    res = CliRunner().invoke(app, ["data", "validate", str(ds)])
    assert res.exit_code == 1 and "--rehash" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["data", "validate", str(ds), "--rehash"])
    out = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "manifest refreshed" in out and f"eval.jsonl: {len(rows)} -> {len(rows) - 1} records" in out
    res = CliRunner().invoke(app, ["data", "validate", str(ds), "--rehash"])
    assert res.exit_code == 0 and "manifest unchanged" in " ".join(res.output.split())
