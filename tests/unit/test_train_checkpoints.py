"""Checkpoint completeness and the choice of the checkpoint to resume from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from thinkflow.train import checkpoints


def _checkpoint(root: Path, step: int, *, state: str | None = "ok") -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state == "ok":
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    elif state == "truncated":
        (path / "trainer_state.json").write_text('{"global_step": ')
    elif state == "other-step":
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step - 1}))
    return path


def test_complete_means_trainer_state_for_that_step(tmp_path: Path) -> None:
    assert checkpoints.is_complete(_checkpoint(tmp_path, 2))
    assert not checkpoints.is_complete(_checkpoint(tmp_path, 4, state=None))
    assert not checkpoints.is_complete(_checkpoint(tmp_path, 6, state="truncated"))
    assert not checkpoints.is_complete(_checkpoint(tmp_path, 8, state="other-step"))
    assert not checkpoints.is_complete(tmp_path / "checkpoint-99")


def test_newest_complete_skips_partial_saves(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 10)  # numeric order, not lexical: 10 > 4
    _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 12, state=None)
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "final").mkdir()
    assert [s for s, _ in checkpoints.list_checkpoints(tmp_path)] == [12, 10, 4, 2]
    assert checkpoints.newest_complete(tmp_path) == tmp_path / "checkpoint-10"
    assert checkpoints.newest_complete(tmp_path / "missing") is None


def test_prepare_resume_logs_and_clears_newer_partial(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _checkpoint(tmp_path, 3)
    partial = _checkpoint(tmp_path, 6, state="truncated")
    older_partial = _checkpoint(tmp_path, 1, state=None)
    with caplog.at_level(logging.INFO, logger="thinkflow.train"):
        chosen = checkpoints.prepare_resume(tmp_path)
    assert chosen == tmp_path / "checkpoint-3"
    assert f"resuming from {chosen} (global_step 3)" in caplog.text
    assert not partial.exists()  # the resumed run writes step 6 again
    assert older_partial.exists()  # older than the chosen one: left to the Trainer's rotation


def test_prepare_resume_fresh_start(tmp_path: Path) -> None:
    partial = _checkpoint(tmp_path, 2, state=None)
    assert checkpoints.prepare_resume(tmp_path, remove_incomplete=False) is None
    assert partial.exists()  # non-main processes never delete
