"""The promotion gate: decisions, tags, the lock, and racing promotions (local sqlite MLflow registry)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eval_fixtures as fx
from thinkflow.registry.gate import (
    CHAMPION,
    LOCK_SUFFIX,
    GateConfig,
    GateError,
    current_champion,
    decide,
    gate,
    promote,
    registry_lock,
)

SET = "a" * 64


def _v(version: int, score: float | None, set_hash: str = SET, base: float | None = None) -> SimpleNamespace:
    tags = {"eval.set_hash": set_hash}
    if score is not None:
        tags["eval.overall.mean_score"] = repr(score)
    if base is not None:  # the base model evaluated on the same samples (EvalConfig.base_model)
        tags["eval.base.overall.mean_score"] = repr(base)
    return SimpleNamespace(version=str(version), tags=tags)


@pytest.mark.parametrize(
    ("challenger", "champion", "cfg", "promoted", "decision", "reason"),
    [
        (_v(1, 0.3), None, GateConfig(), True, "promoted", "no champion yet"),
        (_v(2, 0.5), _v(1, 0.4), GateConfig(), True, "promoted", "0.5000 beats champion version 1 (0.4000)"),
        (_v(2, 0.4), _v(1, 0.4), GateConfig(), False, "rejected", "does not beat"),
        (_v(2, 0.42), _v(1, 0.4), GateConfig(margin=0.05), False, "rejected", "by more than 0.05"),
        (_v(2, 0.5), _v(1, 0.4), GateConfig(margin=0.05), True, "promoted", "by more than 0.05"),
        (_v(2, 0.9), _v(1, 0.4, "b" * 64), GateConfig(), False, "rejected", "different eval set"),
        (_v(2, 0.9), _v(1, 0.4, "b" * 64), GateConfig(require_same_eval_set=False), True, "promoted", "beats"),
        (_v(2, None), _v(1, 0.4), GateConfig(), False, "rejected", "challenger has no eval.overall.mean_score"),
        (_v(2, 0.9), _v(1, None), GateConfig(), False, "rejected", "promote by hand"),
        (_v(1, 0.9), _v(1, 0.9), GateConfig(), False, "already-champion", "already @champion"),
        # a first version must beat the base model it was trained from, evaluated on the same samples
        (_v(1, 0.3, base=0.2), None, GateConfig(), True, "promoted", "beats the base model (0.2000)"),
        (_v(1, 0.2, base=0.2), None, GateConfig(), False, "rejected", "does not beat the base model (0.2000)"),
        (_v(1, 0.0, base=0.0), None, GateConfig(), False, "rejected", "@champion stays unset"),
        (_v(1, 0.25, base=0.2), None, GateConfig(margin=0.1), False, "rejected", "by more than 0.1"),
        (_v(1, None, base=0.2), None, GateConfig(), False, "rejected", "challenger has no eval.overall.mean_score"),
    ],
)
def test_decide(challenger: Any, champion: Any, cfg: GateConfig, promoted: bool, decision: str, reason: str) -> None:
    d = decide("m", challenger, champion, cfg)
    assert (d.promoted, d.decision) == (promoted, decision)
    assert reason in d.reason
    assert d.tags() == {"gate.decision": decision, "gate.champion_version": champion.version if champion else "none"}
    text = d.markdown()  # the description's gate section: decision, reasoning, numbers
    assert text.startswith("## Gate decision") and f"**{decision}**" in text and d.reason in text
    assert "`overall.mean_score`" in text


def test_gate_on_another_metric() -> None:
    ch = SimpleNamespace(version="2", tags={"eval.set_hash": SET, "eval.mathvista.score": "0.6"})
    champ = SimpleNamespace(version="1", tags={"eval.set_hash": SET, "eval.mathvista.score": "0.5"})
    assert decide("m", ch, champ, GateConfig(metric="mathvista.score")).promoted


@pytest.fixture(scope="module")
def db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fx.mlflow_db_template(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture
def registry(db_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow import MlflowClient

    fx.use_mlflow_db(db_template, tmp_path, monkeypatch)
    client = MlflowClient()
    client.create_registered_model("m")
    (tmp_path / "src").mkdir()
    return client


def _champ(client: Any) -> str | None:
    champ = current_champion(client, "m")
    return str(champ.version) if champ is not None else None


def _add(client: Any, score: float, set_hash: str = SET) -> str:
    tags = {"eval.overall.mean_score": repr(score), "eval.set_hash": set_hash}
    return str(client.create_model_version("m", source=str(Path.cwd() / "src"), tags=tags).version)


def test_gate_moves_champion_both_ways_and_records_the_decision(registry: Any) -> None:
    v1 = _add(registry, 0.30)
    d1 = gate("m", v1, client=registry)
    assert d1.promoted and _champ(registry) == v1
    v2 = _add(registry, 0.25)  # worse: rejected, champion unchanged
    d2 = gate("m", v2, client=registry)
    assert not d2.promoted and _champ(registry) == v1
    mv2 = registry.get_model_version("m", v2)
    assert mv2.tags["gate.decision"] == "rejected" and mv2.tags["gate.champion_version"] == v1
    assert f"| challenger | {v2} | 0.2500 |" in mv2.description and f"| champion before | {v1} | 0.3000 |" in (
        mv2.description
    )
    assert set(mv2.tags) == {"eval.overall.mean_score", "eval.set_hash", "gate.decision", "gate.champion_version"}
    assert gate("m", v2, client=registry).decision == "rejected"  # gated again: its section is replaced
    assert registry.get_model_version("m", v2).description.count("## Gate decision") == 1
    v3 = _add(registry, 0.40)  # better: promoted
    assert gate("m", v3, client=registry).promoted
    assert _champ(registry) == v3
    assert registry.get_model_version("m", v3).tags["gate.decision"] == "promoted"
    # the lock model is gone after each gate
    assert not [m for m in registry.search_registered_models() if m.name.endswith(LOCK_SUFFIX)]


def test_manual_promote_records_reason_and_previous(registry: Any) -> None:
    v1, v2 = _add(registry, 0.5), _add(registry, 0.1)
    gate("m", v1, client=registry)
    d = promote("m", v2, "rollback: v1 misbehaves on real traffic", client=registry)
    assert d.promoted and d.champion_version == v1
    assert _champ(registry) == v2
    mv = registry.get_model_version("m", v2)
    assert mv.tags["gate.decision"] == "manual" and mv.tags["gate.champion_version"] == v1
    assert "**manual**" in mv.description and "rollback: v1 misbehaves" in mv.description
    assert d.by and f"by hand ({d.by})" in mv.description
    with pytest.raises(GateError, match="reason is required"):
        promote("m", v1, "  ", client=registry)
    with pytest.raises(GateError, match="m version 99"):
        promote("m", "99", "typo", client=registry)
    assert _champ(registry) == v2


def test_lock_is_mutually_exclusive(registry: Any) -> None:
    inside = []
    overlaps = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        with registry_lock(registry, "m", timeout_s=60):
            with lock:
                if inside:
                    overlaps.append((i, list(inside)))
                inside.append(i)
            time.sleep(0.05)
            with lock:
                inside.remove(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_stale_lock_is_taken_over(registry: Any) -> None:
    registry.create_registered_model(
        f"m{LOCK_SUFFIX}",
        tags={"thinkflow.lock.owner": "dead-process", "thinkflow.lock.since": repr(time.time() - 3600)},
    )
    with registry_lock(registry, "m", timeout_s=10, stale_after_s=60) as token:
        assert registry.get_registered_model(f"m{LOCK_SUFFIX}").tags["thinkflow.lock.owner"] == token
    with pytest.raises(GateError, match="could not take the gate lock"):
        registry.create_registered_model(
            f"m{LOCK_SUFFIX}", tags={"thinkflow.lock.owner": "live", "thinkflow.lock.since": repr(time.time())}
        )
        with registry_lock(registry, "m", timeout_s=0.5, stale_after_s=60):
            pass


def test_racing_gates_leave_the_best_champion(registry: Any) -> None:
    base = _add(registry, 0.2)
    gate("m", base, client=registry)
    scores = [0.35, 0.6, 0.3, 0.55, 0.45, 0.5]
    versions = [_add(registry, s) for s in scores]
    champions_seen: list[str | None] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def watch() -> None:  # the registry is never without a champion
        while not stop.is_set():
            champ = current_champion(registry, "m")
            champions_seen.append(str(champ.version) if champ else None)

    def run(v: str) -> None:
        try:
            gate("m", v, client=registry)
        except BaseException as exc:
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=run, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    best = versions[scores.index(max(scores))]
    assert _champ(registry) == best
    assert None not in champions_seen
    decisions = {v: registry.get_model_version("m", v).tags["gate.decision"] for v in versions}
    assert decisions[best] == "promoted"
    # every promotion beat the champion it replaced (the one it read under the lock)
    score_of = {**dict(zip(versions, scores, strict=True)), base: 0.2}
    for v in versions:
        if decisions[v] == "promoted":
            replaced = registry.get_model_version("m", v).tags["gate.champion_version"]
            assert score_of[v] > score_of[replaced]
    assert CHAMPION in registry.get_registered_model("m").aliases
