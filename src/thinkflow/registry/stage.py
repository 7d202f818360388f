"""The register stage: `register(cfg)` logs a checkpoint directory with the transformers flavor, registers a
version under ``name``, puts ``@challenger`` on it, then runs the promotion gate.

Tracking/registry URI from ``MLFLOW_TRACKING_URI``; artifacts go wherever the server puts them (S3/MinIO
through the server's artifact proxy). Registration is idempotent: a model directory whose content hash is
already registered under ``name`` returns that version (its tags and description refreshed with the new
evaluation, which is gated again) instead of creating a new one.

What the version page shows (a few tags, a Markdown description) is `thinkflow.registry.describe`; the full
lineage and evaluation are artifacts of the register run (``lineage.json``, ``eval/metrics.json``, the report).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from thinkflow import storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.registry import describe
from thinkflow.registry.flavor import log_model
from thinkflow.registry.gate import (
    CHALLENGER,
    CHAMPION,
    GATE_HEADING,
    GATE_TAGS,
    GateConfig,
    GateDecision,
    current_champion,
    gate,
)
from thinkflow.registry.lineage import (
    CONTENT_HASH_TAG,
    LINEAGE_FILE,
    RegistryError,
    content_hash,
    lineage_fields,
    missing_lineage,
    read_lineage,
    staged_model,
)
from thinkflow.registry.versions import alias_of, client, ensure_registered_model, find_version

log = logging.getLogger(__name__)

EVAL_METRICS_ARTIFACT = "eval/metrics.json"  # on the register run; `evaluate.report.load_baseline` reads it
REPORT_FILES = ("report.md", "report.html", "benchmarks.png", "aha.png", "training_curves.png")


class RegisterConfig(StageConfig):
    """Register a model version with its lineage and evaluation, then gate ``@champion``. Every key has a default."""

    model: str = Field(
        default=".thinkflow/runs/tiny-grpo", min_length=1, description="Checkpoint directory or s3:// URI to register."
    )
    eval: str | None = Field(
        default=".thinkflow/eval",
        description="Evaluate output directory (or its metrics.json); its metrics feed the gate. null: none.",
    )
    name: str = Field(default="thinkflow-vlm", min_length=1, description="Registered model name.")
    task: str = Field(
        default="image-text-to-text", description="transformers pipeline task recorded in the MLflow flavor."
    )
    description: str | None = Field(
        default=None,
        description="Text for the registered model and the top of the version description (above the metrics).",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra version tags (on top of the ten ThinkFlow writes)."
    )
    promote: bool = Field(
        default=True, description="Run the promotion gate after registering (false: only @challenger)."
    )
    gate: GateConfig = Field(default_factory=GateConfig, description="How the challenger must beat @champion.")


class Registration(BaseModel):
    """What a registration produced: the registered model, its version, the alias it holds now, its URI."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Registered model name.")
    version: str = Field(description="The version number (a string, as MLflow returns it).")
    alias: str = Field(description="The alias the version holds now: champion, challenger, or '' when none.")
    uri: str = Field(description="models:/NAME/VERSION")
    created: bool = Field(description="A new version (false: this content was registered before).")
    content_hash: str = Field(description="SHA-256 of the model's files (the version's thinkflow.content_hash tag).")
    gate: GateDecision | None = Field(default=None, description="The gate's decision, when the gate ran.")


class RegisterResult(StageResult):
    """`StageResult` of the register stage, with the registration as typed fields."""

    registration: Registration


def read_eval(eval_uri: str) -> dict[str, Any]:
    """The evaluation's ``metrics.json`` (``eval_uri`` is the evaluate output dir, or the file itself)."""
    uri = eval_uri if eval_uri.endswith(".json") else storage.join(eval_uri, "metrics.json")
    try:
        data = json.loads(storage.read_text(uri))
    except (OSError, storage.StorageError) as exc:
        raise RegistryError(
            f"eval: no metrics.json at {uri} ({exc}); run `thinkflow evaluate` first or --set eval=null"
        ) from None
    except ValueError as exc:
        raise RegistryError(f"eval: {uri} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "overall" not in data:
        raise RegistryError(f"eval: {uri} is not an evaluation metrics.json (no 'overall' key)")
    return data


def _log_eval_reports(eval_uri: str, run_id: str, mlflow_client: Any) -> None:
    """Attach the evaluation's report files to the register run (best effort: the metrics are already logged)."""
    if eval_uri.endswith(".json"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in REPORT_FILES:
            uri = storage.join(eval_uri, name)
            try:
                if not storage.exists(uri):
                    continue
                target = Path(tmp, name)
                if storage.is_remote(uri):
                    storage.download(uri, target)
                else:
                    target.write_bytes(Path(uri).read_bytes())
                mlflow_client.log_artifact(run_id, str(target), artifact_path="eval")
            except (OSError, storage.StorageError) as exc:
                log.warning("eval report %s not attached: %s", uri, exc)


def _log_evaluation(mlflow_client: Any, run_id: str, metrics: dict[str, Any], eval_uri: str) -> None:
    """The evaluation on the register run: its numbers as metrics, its metrics.json and its report files."""
    import time

    from mlflow.entities import Metric

    from thinkflow.evaluate.metrics import flatten_metrics

    now = int(time.time() * 1000)
    flat = flatten_metrics(metrics)
    mlflow_client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in flat.items()])
    mlflow_client.log_dict(run_id, metrics, EVAL_METRICS_ARTIFACT)
    _log_eval_reports(eval_uri, run_id, mlflow_client)


def register(cfg: RegisterConfig) -> RegisterResult:
    """Register ``cfg.model`` under ``cfg.name`` (idempotent by content hash), describe it, ``@challenger``, gate."""
    from mlflow.exceptions import MlflowException

    from thinkflow.models.load import ModelDirError, resolve

    try:
        model_dir = resolve(cfg.model)
    except ModelDirError as exc:
        raise RegistryError(f"model: {exc}") from None
    digest = content_hash(model_dir)
    lineage = read_lineage(model_dir)
    fields = lineage_fields(lineage)
    missing = missing_lineage(fields)
    if missing:
        log.warning("model %s: lineage unknown for %s", cfg.model, ", ".join(missing))
    metrics = read_eval(cfg.eval) if cfg.eval else None
    tags = {
        **describe.version_tags(
            digest=digest, source=cfg.model, fields=fields, metrics=metrics, gate_metric=cfg.gate.metric
        ),
        **cfg.tags,
    }

    def description(run_id: str | None) -> str:
        return describe.version_description(
            note=cfg.description,
            source=cfg.model,
            digest=digest,
            fields=fields,
            missing=missing,
            lineage_present=lineage is not None,
            metrics=metrics,
            eval_uri=cfg.eval,
            register_run_id=run_id,
        )

    mlflow_client = client()
    ensure_registered_model(mlflow_client, cfg.name, cfg.description)
    existing = find_version(cfg.name, digest, mlflow_client)
    if existing is not None:
        version, run_id, created = str(existing.version), existing.run_id, False
        log.info("model %s already registered as %s version %s", cfg.model, cfg.name, version)
        eval_changed = _refresh(mlflow_client, cfg, existing, tags, metrics, run_id)
    else:
        version, run_id = _create(cfg, model_dir, digest, lineage, fields, missing, metrics, tags, description)
        created, eval_changed = True, False
        # Two registrations of the same content racing: keep the oldest version, drop ours.
        oldest = find_version(cfg.name, digest, mlflow_client)
        if oldest is not None and str(oldest.version) != version:
            log.info("model %s registered concurrently as version %s; dropping %s", cfg.model, oldest.version, version)
            try:
                mlflow_client.delete_model_version(cfg.name, version)
            except MlflowException as exc:
                log.warning("could not delete duplicate version %s: %s", version, exc)
            version, run_id, created = str(oldest.version), oldest.run_id, False
    if created:
        mlflow_client.set_registered_model_alias(cfg.name, CHALLENGER, version)
    current = mlflow_client.get_model_version(cfg.name, version)
    if not created or eval_changed:  # (re)write the description, keeping the gate's section of the last decision
        text = description(run_id)
        old = current.description or ""
        if GATE_HEADING in old:  # the last decision stays until the gate decides again
            text = text.rstrip() + "\n\n" + old[old.index(GATE_HEADING) :]
        if text != old:
            mlflow_client.update_model_version(cfg.name, version, description=text)
    decision: GateDecision | None = None
    champion = current_champion(mlflow_client, cfg.name)
    is_champion = champion is not None and str(champion.version) == version
    if cfg.promote and not is_champion and (created or eval_changed or "gate.decision" not in current.tags):
        decision = gate(cfg.name, version, cfg.gate, client=mlflow_client)
    aliases = list(current.aliases or [])
    alias = CHAMPION if (decision is not None and decision.promoted) or is_champion else alias_of(aliases)
    registration = Registration(
        name=cfg.name,
        version=version,
        alias=alias,
        uri=f"models:/{cfg.name}/{version}",
        created=created,
        content_hash=digest,
        gate=decision,
    )
    return _result(registration, run_id, missing, lineage is not None)


def _create(
    cfg: RegisterConfig,
    model_dir: Path,
    digest: str,
    lineage: dict[str, Any] | None,
    fields: dict[str, Any],
    missing: list[str],
    metrics: dict[str, Any] | None,
    tags: dict[str, str],
    description: Callable[[str | None], str],
) -> tuple[str, str]:
    """A new version: the register run (lineage, evaluation, the model), the version with its tags and description."""
    import mlflow

    from thinkflow.tracking import stage_run

    params = {"model": cfg.model, "name": cfg.name, "content_hash": digest, "eval": cfg.eval or ""}
    with stage_run("register", params) as active:
        run_id = active.info.run_id
        mlflow_client = client()
        mlflow_client.log_batch(run_id, tags=_run_tags(describe.run_tags(fields, missing, lineage is not None)))
        if lineage is not None:
            mlflow_client.log_dict(run_id, lineage, LINEAGE_FILE)
        if metrics is not None and cfg.eval:
            _log_evaluation(mlflow_client, run_id, metrics, cfg.eval)
        text = description(run_id)
        with staged_model(model_dir) as to_log:
            info = log_model(
                to_log,
                task=cfg.task,
                card_text=describe.model_card_text(cfg.name, text),
                metadata_={CONTENT_HASH_TAG: digest, "source": cfg.model, "lineage_missing": missing},
            )
        mv = mlflow.register_model(info.model_uri, cfg.name, tags=tags)
        mlflow_client.update_model_version(cfg.name, str(mv.version), description=text)
    return str(mv.version), run_id


def _run_tags(tags: dict[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in tags.items()]


def _refresh(
    mlflow_client: Any,
    cfg: RegisterConfig,
    existing: Any,
    tags: dict[str, str],
    metrics: dict[str, Any] | None,
    run_id: str | None,
) -> bool:
    """Bring an existing version's tags up to date (a new evaluation replaces ours; True when it changed)."""
    old = dict(existing.tags or {})
    version = str(existing.version)
    ours = [k for k in old if k.startswith(describe.RECOMPUTED_PREFIXES)]
    stale = [k for k in ours if k not in tags and (metrics is not None or not k.startswith("eval."))]
    # what older registrations and gates wrote beyond the tags a person filters by (now in the description)
    stale += [k for k in old if k.startswith(("gate.", "promote.")) and k not in GATE_TAGS and k not in tags]
    for key in stale:
        mlflow_client.delete_model_version_tag(cfg.name, version, key)
    eval_changed = metrics is not None and any(old.get(k) != v for k, v in tags.items() if k.startswith("eval."))
    for key, value in tags.items():  # also fills in tags a crashed earlier attempt may have left out
        if old.get(key) != value:
            mlflow_client.set_model_version_tag(cfg.name, version, key, value)
    if eval_changed and run_id and metrics is not None and cfg.eval:
        _log_evaluation(mlflow_client, run_id, metrics, cfg.eval)
    return eval_changed


def _result(
    registration: Registration, run_id: str | None, missing: list[str], lineage_present: bool
) -> RegisterResult:
    decision = registration.gate
    metrics: dict[str, float] = {"version": float(registration.version), "created": float(registration.created)}
    artifacts = {"model_uri": registration.uri, "content_hash": registration.content_hash}
    if decision is not None:
        metrics["promoted"] = float(decision.promoted)
        if decision.challenger_value is not None:
            metrics["challenger_value"] = decision.challenger_value
        if decision.champion_value is not None:
            metrics["champion_value"] = decision.champion_value
        artifacts["gate"] = decision.decision
        artifacts["gate_reason"] = decision.reason
    if missing:
        artifacts["lineage_missing"] = ", ".join(missing) + ("" if lineage_present else " (no lineage.json)")
    return RegisterResult(
        stage="register",
        output=registration.uri,
        metrics=metrics,
        artifacts=artifacts,
        mlflow_run_id=run_id,
        registration=registration,
    )
