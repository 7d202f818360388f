"""The promotion gate: ``@challenger`` becomes ``@champion`` only when it beats the champion on the same eval set.

A first version (no champion yet) must beat the base model it was trained from when the evaluation measured
that base model on the same samples (``eval.base.<metric>``, from `EvalConfig.base_model`).

Aliases, not stages. The gate reads the challenger's ``eval.<metric>`` tag and the champion's, checks that
both were evaluated on the same eval set (``eval.set_hash``: same questions and protocol), and moves
``@champion`` only when ``challenger > champion + margin`` (or there is no champion yet). The decision and
its numbers are written as ``gate.*`` tags on the challenger version.

Race safety: the read-compare-move runs under a registry-wide lock per model, taken by creating the
registered model ``<name>.gate-lock``. Creating a registered model is atomic in every MLflow backend (a
unique name), so two gates (or a gate and a manual `promote`) never interleave: each compares against the
champion as it is when it holds the lock, the alias is only ever moved (never deleted), so the registry is
never left without a champion or with a worse one. A lock left by a crashed process expires after
``stale_after_s``.
"""

from __future__ import annotations

import getpass
import logging
import os
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thinkflow import env
from thinkflow.errors import ThinkFlowError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
LOCK_SUFFIX = ".gate-lock"
LOCK_OWNER_TAG = "thinkflow.lock.owner"
LOCK_SINCE_TAG = "thinkflow.lock.since"
_RETRYABLE = {"RESOURCE_ALREADY_EXISTS", "INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "ABORTED", "RESOURCE_CONFLICT"}


class GateError(ThinkFlowError, RuntimeError):
    """The gate could not run (no such version, lock not obtained)."""


class GateConfig(BaseModel):
    """How a challenger must compare with the champion to be promoted."""

    model_config = ConfigDict(extra="forbid")

    metric: str = "overall.mean_score"  # an eval metric key (version tag eval.<metric>); higher is better
    margin: float = Field(default=0.0, ge=0.0)  # required improvement over the champion (absolute)
    require_same_eval_set: bool = True  # compare only evaluations of the same questions and protocol
    lock_timeout_s: float = Field(default=120.0, gt=0)
    stale_after_s: float = Field(default=600.0, gt=0)


@dataclass
class GateDecision:
    """The outcome of a gate or a manual promotion."""

    name: str
    version: str
    promoted: bool
    decision: str  # promoted | rejected | already-champion | manual
    reason: str
    metric: str
    challenger_value: float | None
    champion_version: str | None
    champion_value: float | None
    margin: float
    base_value: float | None = None  # the base model on the same eval set (the floor of a first version)

    def tags(self) -> dict[str, str]:
        out = {
            "gate.decision": self.decision,
            "gate.reason": self.reason,
            "gate.metric": self.metric,
            "gate.margin": repr(self.margin),
            "gate.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "gate.champion_version": self.champion_version or "none",
        }
        if self.challenger_value is not None:
            out["gate.challenger_value"] = repr(self.challenger_value)
        if self.champion_value is not None:
            out["gate.champion_value"] = repr(self.champion_value)
        if self.base_value is not None:
            out["gate.base_value"] = repr(self.base_value)
        return out


def _client(client: Any | None) -> Any:
    if client is not None:
        return client
    from mlflow import MlflowClient

    return MlflowClient()


def current_champion(client: Any, name: str, alias: str = CHAMPION) -> Any | None:
    """The version holding ``@champion``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


@contextmanager
def registry_lock(client: Any, name: str, *, timeout_s: float = 120.0, stale_after_s: float = 600.0) -> Iterator[str]:
    """Hold the gate lock of ``name`` (the registered model ``<name>.gate-lock``, created atomically)."""
    from mlflow.exceptions import MlflowException

    lock = f"{name}{LOCK_SUFFIX}"
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={LOCK_OWNER_TAG: token, LOCK_SINCE_TAG: repr(time.time())},
                description=f"Promotion-gate lock of {name} (held while @champion is compared and moved).",
            )
            break
        except MlflowException as exc:
            if exc.error_code not in _RETRYABLE:
                raise
            holder = _lock_holder(client, lock)
            if holder is not None and holder[0] == token:
                break  # our create went through; the error was about the reply
            if holder is not None and time.time() - holder[1] > stale_after_s:
                log.warning(
                    "gate lock %s held by %s since %.0fs: taking it over", lock, holder[0], time.time() - holder[1]
                )
                _delete_if_owner(client, lock, holder[0])
                continue
        if time.monotonic() > deadline:
            raise GateError(f"could not take the gate lock {lock!r} within {timeout_s:.0f}s") from None
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)
    try:
        yield token
    finally:
        _delete_if_owner(client, lock, token)


def _lock_holder(client: Any, lock: str) -> tuple[str, float] | None:
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(lock)
    except MlflowException:
        return None
    tags = model.tags or {}
    try:
        since = float(tags.get(LOCK_SINCE_TAG, "0"))
    except ValueError:
        since = 0.0
    return tags.get(LOCK_OWNER_TAG, ""), since


def _delete_if_owner(client: Any, lock: str, owner: str) -> None:
    from mlflow.exceptions import MlflowException

    holder = _lock_holder(client, lock)
    if holder is None or holder[0] != owner:
        return
    try:
        client.delete_registered_model(lock)
    except MlflowException as exc:
        log.warning("could not release gate lock %s: %s", lock, exc)


def _metric(tags: dict[str, str], metric: str) -> float | None:
    value = tags.get(f"eval.{metric}")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def decide(name: str, challenger: Any, champion: Any | None, cfg: GateConfig) -> GateDecision:
    """Compare a challenger version with the champion version (pure: reads their tags, moves nothing)."""
    version = str(challenger.version)
    ours = _metric(challenger.tags or {}, cfg.metric)
    base = _metric(challenger.tags or {}, f"base.{cfg.metric}")  # eval.base.*: the base model, same eval set

    def result(promoted: bool, decision: str, reason: str, champ_value: float | None = None) -> GateDecision:
        return GateDecision(
            name,
            version,
            promoted,
            decision,
            reason,
            cfg.metric,
            ours,
            str(champion.version) if champion is not None else None,
            champ_value,
            cfg.margin,
            base,
        )

    if champion is None:
        if base is None:
            return result(True, "promoted", "no champion yet (no base-model evaluation to compare with)")
        if ours is None:
            return result(False, "rejected", f"no champion yet, and the challenger has no eval.{cfg.metric} tag")
        if ours > base + cfg.margin:
            return result(
                True,
                "promoted",
                f"no champion yet; {cfg.metric} {ours:.4f} beats the base model ({base:.4f}) on the same eval set "
                f"by more than {cfg.margin}",
            )
        return result(
            False,
            "rejected",
            f"no champion yet, but {cfg.metric} {ours:.4f} does not beat the base model ({base:.4f}) on the same "
            f"eval set by more than {cfg.margin}; @{CHAMPION} stays unset",
        )
    theirs = _metric(champion.tags or {}, cfg.metric)
    if str(champion.version) == version:
        return result(False, "already-champion", f"version {version} is already @{CHAMPION}", theirs)
    if ours is None:
        return result(
            False, "rejected", f"challenger has no eval.{cfg.metric} tag (registered without an evaluation)", theirs
        )
    if theirs is None:
        return result(
            False,
            "rejected",
            f"champion version {champion.version} has no eval.{cfg.metric} tag to "
            "compare with; promote by hand if intended",
        )
    if cfg.require_same_eval_set:
        a = (challenger.tags or {}).get("eval.set_hash", "")
        b = (champion.tags or {}).get("eval.set_hash", "")
        if not a or a != b:
            return result(
                False,
                "rejected",
                f"evaluated on a different eval set than champion version "
                f"{champion.version} ({a[:12] or 'none'} vs {b[:12] or 'none'})",
                theirs,
            )
    if ours > theirs + cfg.margin:
        return result(
            True,
            "promoted",
            f"{cfg.metric} {ours:.4f} beats champion version {champion.version} "
            f"({theirs:.4f}) by more than {cfg.margin}",
            theirs,
        )
    return result(
        False,
        "rejected",
        f"{cfg.metric} {ours:.4f} does not beat champion version {champion.version} "
        f"({theirs:.4f}) by more than {cfg.margin}",
        theirs,
    )


def gate(name: str, version: str | int, cfg: GateConfig | None = None, *, client: Any | None = None) -> GateDecision:
    """Compare version ``version`` of ``name`` with ``@champion`` and move the alias if it wins (under the lock)."""
    from mlflow.exceptions import MlflowException

    cfg = cfg or GateConfig()
    client = _client(client)
    with registry_lock(client, name, timeout_s=cfg.lock_timeout_s, stale_after_s=cfg.stale_after_s):
        try:
            challenger = client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise GateError(f"{name} version {version}: {exc.message}") from None
        champion = current_champion(client, name)
        decision = decide(name, challenger, champion, cfg)
        if decision.promoted:
            client.set_registered_model_alias(name, CHAMPION, str(version))
        for key, value in decision.tags().items():
            client.set_model_version_tag(name, str(version), key, value)
        after = current_champion(client, name)
        if decision.promoted and (after is None or str(after.version) != str(version)):
            raise GateError(
                f"{name}: @{CHAMPION} is {after.version if after else 'unset'} right after moving it to "
                f"{version}; something moved it without the gate lock"
            )
    log.info("gate %s v%s: %s (%s)", name, version, decision.decision, decision.reason)
    return decision


def promote(name: str, version: str | int, reason: str, *, client: Any | None = None) -> GateDecision:
    """Move ``@champion`` to ``version`` by hand (no comparison), recording who, when, why and the previous champion."""
    from mlflow.exceptions import MlflowException

    if not reason.strip():
        raise GateError("promote: a reason is required")
    client = _client(client)
    with registry_lock(client, name):
        try:
            target = client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise GateError(f"{name} version {version}: {exc.message}") from None
        previous = current_champion(client, name)
        client.set_registered_model_alias(name, CHAMPION, str(version))
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        tags = {
            "promote.reason": reason,
            "promote.by": os.environ.get(env.USER) or user,
            "promote.at": datetime.now(UTC).isoformat(timespec="seconds"),
            "promote.previous_champion": str(previous.version) if previous is not None else "none",
            "gate.decision": "manual",
            "gate.reason": f"promoted by hand: {reason}",
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, value)
    metric = "overall.mean_score"
    return GateDecision(
        name,
        str(version),
        True,
        "manual",
        reason,
        metric,
        _metric(target.tags or {}, metric),
        str(previous.version) if previous is not None else None,
        _metric(previous.tags or {}, metric) if previous is not None else None,
        0.0,
    )
