"""Storage against a real S3 server (moto's) on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkflow import storage


def test_directory_round_trip(s3: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images" / "deep").mkdir(parents=True)
    files = {
        "manifest.json": b'{"n": 2}',
        "rl.jsonl": b"{}\n{}\n",
        "images/a.png": b"\x89PNG..",
        "images/deep/b.bin": bytes(range(256)) * 100,
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    written = storage.upload(src, "s3://bucket-a/datasets/d1")
    assert len(written) == len(files)
    assert storage.exists("s3://bucket-a/datasets/d1")
    assert storage.exists("s3://bucket-a/datasets/d1/manifest.json")
    assert not storage.exists("s3://bucket-a/datasets/nothing")
    out = storage.download("s3://bucket-a/datasets/d1", tmp_path / "out")
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    # localize caches: the second call returns the same directory without downloading again
    local = storage.localize("s3://bucket-a/datasets/d1", cache=tmp_path / "cache")
    assert (local / "images/deep/b.bin").read_bytes() == files["images/deep/b.bin"]
    assert storage.localize("s3://bucket-a/datasets/d1", cache=tmp_path / "cache") == local
    # rewritten at the same URI: the cache notices and downloads the new content
    (src / "manifest.json").write_bytes(b'{"n": 3}')
    storage.upload(src, "s3://bucket-a/datasets/d1")
    again = storage.localize("s3://bucket-a/datasets/d1", cache=tmp_path / "cache")
    assert (again / "manifest.json").read_bytes() == b'{"n": 3}'
    # sync remote -> remote
    storage.sync("s3://bucket-a/datasets/d1", "s3://bucket-b/copy")
    assert storage.read_text("s3://bucket-b/copy/manifest.json") == '{"n": 3}'


def test_text_and_errors(s3: str, tmp_path: Path) -> None:
    storage.write_text("s3://bkt/x/notes.txt", "héllo")
    assert storage.read_text("s3://bkt/x/notes.txt") == "héllo"
    with pytest.raises(storage.StorageError, match="nothing at s3://bkt/missing"):
        storage.download("s3://bkt/missing", tmp_path / "m")
    with pytest.raises(storage.StorageError, match="cannot upload"):
        storage.upload(tmp_path / "nope", "s3://bkt/y")


def test_local_paths(tmp_path: Path) -> None:
    f = tmp_path / "a" / "b.txt"
    storage.write_text(f, "x")
    assert storage.read_text(f) == "x"
    assert storage.localize(f) == f
    assert storage.join("s3://b/p/", "q", "r.json") == "s3://b/p/q/r.json"
    assert storage.is_remote("minio://b/k") and not storage.is_remote(str(f))
    with pytest.raises(storage.StorageError):
        storage.localize(tmp_path / "missing")
