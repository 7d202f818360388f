"""VLAA JSON arrays are read as a stream: memory does not grow with the file (issue 14)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from thinkflow.data.sources import SourceError, VlaaSource
from thinkflow.data.sources.base import read_json_records
from thinkflow.data.sources.vlaa import iter_vlaa

N = 6000


def _item(i: int) -> dict[str, object]:
    return {
        "id": f"clevr_math-{i}",
        "image": f"CLEVR_Math/images/{i}.png",
        "question": f"How many objects are left after removing {i % 5} cubes?",
        "gt": i % 10,
        "ds_answer": "<think>" + ("Count the objects one by one. " * 120) + f"</think> The answer is {i % 10}.",
        "caption": "A scene of shapes. " * 20,
        "meta": {"score": i / 7, "count": 2**40 + i},
    }


def _write_array(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[\n")
        for i in range(n):
            fh.write(("," if i else "") + json.dumps(_item(i)) + "\n")
        fh.write("]\n")


def test_vlaa_array_is_streamed_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "VLAA-Thinking-SFT-126K.json"
    _write_array(path, N)
    size = path.stat().st_size
    assert size > 20_000_000
    (tmp_path / "images").mkdir()
    src = VlaaSource(json_file=str(path), images=str(tmp_path / "images"))
    tracemalloc.start()
    try:
        count = 0
        for cand in iter_vlaa(src):
            assert cand.error is None, cand.error
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == N
    # json.load of the whole file would hold every item (> the file size); the stream holds a few
    assert peak < size / 20, (peak, size)


def test_streamed_items_equal_json_load(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    _write_array(path, 5)
    assert list(read_json_records(path)) == json.loads(path.read_text())


def test_integers_past_64_bits_fall_back_to_a_whole_read(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    items = [{"id": "a", "n": 1}, {"id": "b", "n": 2**70}, {"id": "c", "n": 1.5}]
    path.write_text(json.dumps(items))
    assert list(read_json_records(path)) == items


def test_bad_json_in_the_middle_names_the_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text("[" + json.dumps(_item(0)) + "," + json.dumps(_item(1)) + ", {bad}]")
    items = read_json_records(path)
    assert next(items)["id"] == "clevr_math-0"
    assert next(items)["id"] == "clevr_math-1"
    with pytest.raises(SourceError, match=r"b\.json: not valid JSON after item 1"):
        next(items)
    path.write_text('[{"id": 1}, 3]')
    with pytest.raises(SourceError, match=r"expected a JSON list of objects, item 1 is int"):
        list(read_json_records(path))
