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
