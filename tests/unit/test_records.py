from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinkflow.records import Record, RecordError, parse_record, read_records, write_jsonl


def _rec(**kw: object) -> dict[str, object]:
    base = {"id": "s-1", "image": "images/a.png", "question": "How many?", "solution": "3", "verifier_type": "digit"}
    base.update(kw)
    return base


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rl.jsonl"
    write_jsonl(path, [Record(**_rec()), Record(**_rec(id="s-2", split="rl", meta={"aha": True}))])  # type: ignore[arg-type]
    recs = list(read_records(path))
    assert [r.id for r in recs] == ["s-1", "s-2"]
    assert recs[1].meta == {"aha": True}


def test_errors_name_file_line_id_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_rec()) + "\n" + json.dumps(_rec(id="s-9", verifier_type="essay")) + "\n")
    with pytest.raises(RecordError, match=r"bad\.jsonl:2: record id='s-9': field 'verifier_type'"):
        list(read_records(path))


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(RecordError, match=r"x\.jsonl:1: not valid JSON"):
        list(read_records(path))


def test_unknown_field_rejected() -> None:
    with pytest.raises(RecordError, match="field 'gt'"):
        parse_record(_rec(gt="3"))
