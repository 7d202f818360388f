"""Registering models in MLflow: log with the transformers flavor from the checkpoint directory, register a version
under ``name`` with lineage and evaluation tags, ``@challenger`` alias, then the promotion gate.

Tracking/registry URI from ``MLFLOW_TRACKING_URI``; artifacts go wherever the server puts them (S3/MinIO
through the server's artifact proxy). Registration is idempotent: a model directory whose content hash is
already registered under ``name`` returns that version instead of creating a new one.

Version tags written here (all strings):

- ``thinkflow.content_hash``, ``thinkflow.source`` (the model URI that was registered)
- ``lineage.*`` from the training stage's ``lineage.json``: ``dataset_uri``, ``dataset_manifest_hash``,
  ``dataset_split``, ``base_model``, ``stage``, ``git_sha``, ``pipeline_run_id``, ``image``, ``reward_mix``,
  ``config`` (JSON), ``versions`` (JSON), ``training_run_id``; ``lineage.missing`` lists what is unknown
- ``eval.*``: ``eval.set_hash``, ``eval.uri`` and every number of the evaluation's ``metrics.json`` as
  ``eval.<key>`` (``eval.overall.mean_score``, ``eval.mathvista.score``, ...)
- ``gate.*`` (see `thinkflow.registry.gate`)
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from unittest import mock

from pydantic import Field

from thinkflow import env, storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.errors import ThinkFlowError
from thinkflow.registry.gate import CHALLENGER, GateConfig, GateDecision, current_champion, gate

log = logging.getLogger(__name__)

LINEAGE_FILE = "lineage.json"
CONTENT_HASH_TAG = "thinkflow.content_hash"
LINEAGE_KEYS = (
    "dataset_uri",
    "dataset_manifest_hash",
    "base_model",
    "config",
    "git_sha",
    "versions",
    "pipeline_run_id",
    "image",
    "reward_mix",
)
MAX_TAG_CHARS = 5000  # portable across registry backends (MLflow itself allows more)
# Not part of the model: training checkpoints and logs kept beside the final weights, hidden files.
SKIP_DIRS = ("checkpoints", "checkpoint-*", "runs", "logs", ".*")


class RegistryError(ThinkFlowError, RuntimeError):
    """A registration that cannot proceed; the message names the model, file or version."""


class RegisterConfig(StageConfig):
    """Register a model version with lineage and eval tags, then gate ``@champion``. Every key has a default."""

    model: str = Field(default=".thinkflow/runs/tiny-grpo", min_length=1)  # checkpoint dir or s3:// URI
    eval: str | None = ".thinkflow/eval"  # evaluate output dir (its metrics.json feeds the gate); null: none
    name: str = Field(default="thinkflow-vlm", min_length=1)  # registered model name
    task: str = "image-text-to-text"  # transformers pipeline task recorded in the flavor
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)  # extra version tags
    promote: bool = True  # run the gate after registering (False: only @challenger)
    gate: GateConfig = Field(default_factory=GateConfig)


# --- content hash and lineage ---------------------------------------------------------------


def model_files(model_dir: str | os.PathLike[str]) -> list[Path]:
    """The files that make up the model (relative paths, sorted): everything but checkpoints, logs, hidden files."""
    root = Path(model_dir)
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(fnmatch.fnmatch(part, pat) for part in rel.parts[:-1] for pat in SKIP_DIRS):
            continue
        if path.is_file() and not rel.name.startswith("."):
            out.append(rel)
    return sorted(out, key=lambda p: p.as_posix())


def content_hash(model_dir: str | os.PathLike[str]) -> str:
    """SHA-256 over the model's files (relative path + bytes); ``lineage.json`` is metadata and left out."""
    root = Path(model_dir)
    h = hashlib.sha256()
    files = [f for f in model_files(root) if f.as_posix() != LINEAGE_FILE]
    if not files:
        raise RegistryError(f"{model_dir}: empty model directory")
    for rel in files:
        h.update(rel.as_posix().encode() + b"\0")
        with open(root / rel, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


@contextmanager
def staged_model(model_dir: Path) -> Iterator[Path]:
    """The model directory as MLflow should copy it: without checkpoints or logs (hard links, no byte copies)."""
    files = model_files(model_dir)
    if len(files) == sum(1 for p in model_dir.rglob("*") if p.is_file()):
        yield model_dir
        return
    with tempfile.TemporaryDirectory(prefix="thinkflow-model-") as tmp:
        stage = Path(tmp, model_dir.name or "model")
        for rel in files:
            target = stage / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(model_dir / rel, target)
            except OSError:
                shutil.copy2(model_dir / rel, target)
        yield stage


def read_lineage(model_dir: Path) -> dict[str, Any] | None:
    """The ``lineage.json`` beside the weights, or None; a malformed file is an error naming it."""
    path = model_dir / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RegistryError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _json(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 15] + "...(truncated)"


def lineage_fields(lineage: dict[str, Any] | None) -> dict[str, Any]:
    """The lineage values the registry records, from the training stage's file (nested or flat keys).

    ``pipeline_run_id`` and ``image`` fall back to ``THINKFLOW_PIPELINE_RUN_ID`` / ``THINKFLOW_IMAGE`` (set by
    the pipeline and the image) when the file does not carry them.
    """
    lin = lineage or {}
    raw_dataset = lin.get("dataset")
    dataset: dict[str, Any] = raw_dataset if isinstance(raw_dataset, dict) else {}
    base = lin.get("base_model")
    config = lin.get("config") if isinstance(lin.get("config"), dict) else None
    reward_mix = lin.get("reward_mix")
    if reward_mix is None:  # GRPO lineage: the reward functions used and the reward config
        parts = {k: lin[k] for k in ("reward_funcs",) if lin.get(k)}
        parts.update({k: config[k] for k in ("reward", "rewards", "reward_funcs") if config and config.get(k)})
        reward_mix = parts or ("none (sft)" if lin.get("stage") == "sft" else None)
    out: dict[str, Any] = {
        "dataset_uri": lin.get("dataset_uri") or dataset.get("uri"),
        "dataset_manifest_hash": lin.get("dataset_manifest_hash") or dataset.get("manifest_hash"),
        "dataset_split": dataset.get("split"),
        "base_model": base.get("uri") if isinstance(base, dict) else base,
        "stage": lin.get("stage"),
        "config": config,
        "git_sha": lin.get("git_sha"),
        "versions": lin.get("versions"),
        "pipeline_run_id": lin.get("pipeline_run_id") or os.environ.get(env.PIPELINE_RUN_ID),
        "image": lin.get("image") or os.environ.get(env.IMAGE),
        "reward_mix": reward_mix,
        "training_run_id": lin.get("mlflow_run_id"),
    }
    return out


def lineage_tags(lineage: dict[str, Any] | None) -> tuple[dict[str, str], list[str]]:
    """``(tags, missing)``: ``lineage.*`` version tags and the lineage keys nobody could tell."""
    fields = lineage_fields(lineage)
    tags = {f"lineage.{k}": _json(v) for k, v in fields.items() if v not in (None, "", {}, [])}
    missing = [k for k in LINEAGE_KEYS if fields.get(k) in (None, "", {}, [])]
    if lineage is None:
        tags["lineage.file"] = "absent"
    tags["lineage.missing"] = ", ".join(missing) if missing else "none"
    return tags, missing


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


def eval_tags(metrics: dict[str, Any], uri: str) -> dict[str, str]:
    """``eval.*`` version tags: the eval set hash, where it came from, and every metric as a number."""
    from thinkflow.evaluate.metrics import flatten_metrics

    tags = {f"eval.{k}": repr(float(v)) for k, v in flatten_metrics(metrics).items()}
    tags["eval.set_hash"] = str(metrics.get("eval_set_hash", ""))
    tags["eval.uri"] = uri
    return tags


def version_eval_summary(model_uri: str) -> dict[str, Any]:
    """Rebuild an evaluation summary (scores per benchmark, overall, aha counts) from a version's ``eval.*`` tags."""
    client = _client()
    mv = resolve_version(model_uri, client)
    summary: dict[str, Any] = {"benchmarks": {}, "overall": {}, "aha": {}}
    for key, value in mv.tags.items():
        if not key.startswith("eval."):
            continue
        parts = key.removeprefix("eval.").split(".")
        try:
            number = float(value)
        except ValueError:
            continue
        if parts[0] == "overall" and len(parts) == 2:
            summary["overall"][parts[1]] = number
        elif parts[0] == "aha" and len(parts) >= 2:
            summary["aha"][".".join(parts[1:])] = number
        elif len(parts) == 2 and parts[0] not in ("verifier",):
            summary["benchmarks"].setdefault(parts[0], {})[parts[1]] = number
    if not summary["overall"]:
        raise RegistryError(f"{model_uri}: version {mv.version} has no eval.* metric tags")
    return summary


# --- MLflow helpers --------------------------------------------------------------------------


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def resolve_version(model_uri: str, client: Any | None = None) -> Any:
    """The ModelVersion of ``models:/NAME@alias`` or ``models:/NAME/VERSION``."""
    client = client or _client()
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, _, version = ref.rpartition("/")
    if not name or not version:
        raise RegistryError(f"expected models:/NAME@alias or models:/NAME/VERSION, got {model_uri!r}")
    return client.get_model_version(name, version)


def find_version(name: str, digest: str, client: Any | None = None) -> Any | None:
    """The oldest version of ``name`` whose content hash is ``digest``, or None."""
    client = client or _client()
    found = _search_versions(client, f"name = '{_quote(name)}' and tags.`{CONTENT_HASH_TAG}` = '{digest}'")
    found = [v for v in found if v.tags.get(CONTENT_HASH_TAG) == digest]
    return min(found, key=lambda v: int(v.version)) if found else None


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def _search_versions(client: Any, filter_string: str) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = client.search_model_versions(filter_string, max_results=200, page_token=token)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def ensure_registered_model(client: Any, name: str, description: str | None = None) -> None:
    """Create the registered model ``name`` unless it exists (safe when two registrations race)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


_PATCH_LOCK = threading.Lock()


@contextmanager
def _pipeline_task_classes() -> Iterator[None]:
    """Make ``transformers.pipelines.check_task`` return classes as MLflow's local-checkpoint logging expects.

    transformers 5 lists pipeline implementations lazily as dotted strings; MLflow 3.17's
    ``build_flavor_config_from_local_checkpoint`` reads ``impl.__name__``. Resolved only for that call.
    """
    from transformers import pipelines

    original = pipelines.check_task

    def check_task(task: str) -> Any:
        name, meta, options = original(task)
        impl = meta.get("impl")
        if isinstance(impl, str):
            module, _, cls = impl.rpartition(".")
            meta = {**meta, "impl": getattr(importlib.import_module(module), cls)}
        return name, meta, options

    with _PATCH_LOCK, mock.patch.object(pipelines, "check_task", check_task):
        yield


def pip_requirements() -> list[str]:
    """What loading the logged model needs, pinned to the installed versions."""
    reqs = []
    for name in ("thinkflow", "torch", "transformers", "accelerate", "pillow"):
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def model_card(name: str, source: str, digest: str, fields: dict[str, Any], missing: list[str]) -> Any:
    """A Hugging Face model card for the logged model (written offline: no hub lookup)."""
    from huggingface_hub import ModelCard

    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags: [thinkflow, vlaa-thinker, grpo]",
        "---",
        f"# {name}",
        "",
        f"Registered by ThinkFlow from `{source}` (content hash `{digest[:16]}`).",
        "",
        "| lineage | value |",
        "|---|---|",
    ]
    for key in (
        "stage",
        "base_model",
        "dataset_uri",
        "dataset_manifest_hash",
        "git_sha",
        "pipeline_run_id",
        "image",
        "training_run_id",
    ):
        if fields.get(key):
            lines.append(f"| {key} | `{fields[key]}` |")
    if missing:
        lines += ["", f"Unknown lineage: {', '.join(missing)}."]
    return ModelCard("\n".join(lines) + "\n")


def log_model(model_dir: Path, *, task: str, card: Any, metadata_: dict[str, Any]) -> Any:
    """Log the checkpoint directory with the transformers flavor, path-based (weights copied, not loaded)."""
    import mlflow

    from thinkflow.models.load import load_processor

    processor = load_processor(model_dir)
    with _pipeline_task_classes():
        return mlflow.transformers.log_model(
            str(model_dir),
            name="model",
            task=task,
            processor=processor,
            model_card=card,
            pip_requirements=pip_requirements(),
            metadata=metadata_,
        )


# --- the stage -------------------------------------------------------------------------------


def register(cfg: RegisterConfig) -> StageResult:
    """Register ``cfg.model`` under ``cfg.name`` (idempotent by content hash), tag it, ``@challenger``, then gate."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from thinkflow.tracking import stage_run

    try:
        model_dir = storage.localize(cfg.model)
    except storage.StorageError as exc:
        raise RegistryError(f"model: {exc}") from None
    if not (model_dir / "config.json").is_file():
        raise RegistryError(f"model: {cfg.model} is not a model directory (no config.json in {model_dir})")
    digest = content_hash(model_dir)
    lineage = read_lineage(model_dir)
    ltags, missing = lineage_tags(lineage)
    if missing:
        log.warning("model %s: lineage unknown for %s", cfg.model, ", ".join(missing))
    metrics = read_eval(cfg.eval) if cfg.eval else None
    etags = eval_tags(metrics, cfg.eval) if metrics and cfg.eval else {}

    client = _client()
    ensure_registered_model(client, cfg.name, cfg.description)
    existing = find_version(cfg.name, digest, client)
    run_id: str | None
    eval_changed = False
    if existing is not None:
        version = str(existing.version)
        run_id = existing.run_id
        created = False
        log.info("model %s already registered as %s version %s", cfg.model, cfg.name, version)
        tags = dict(existing.tags or {})
        if etags:  # a new evaluation of the same model replaces its eval.* tags (and is gated again)
            stale = [k for k in tags if k.startswith("eval.") and k not in etags]
            for key in stale:
                client.delete_model_version_tag(cfg.name, version, key)
            eval_changed = bool(stale) or any(tags.get(k) != v for k, v in etags.items() if k != "eval.uri")
        # Also fills in tags a crashed earlier attempt may have left out.
        for key, value in {**ltags, **etags, **cfg.tags}.items():
            if tags.get(key) != value:
                client.set_model_version_tag(cfg.name, version, key, value)
    else:
        fields = lineage_fields(lineage)
        params = {"model": cfg.model, "name": cfg.name, "content_hash": digest, "eval": cfg.eval or ""}
        with stage_run("register", params) as active:
            run_id = active.info.run_id
            if lineage is not None:
                mlflow.log_dict(lineage, "lineage.json")
            if metrics is not None and cfg.eval:
                from thinkflow.evaluate.metrics import flatten_metrics

                mlflow.log_metrics(flatten_metrics(metrics))
                mlflow.log_dict(metrics, "eval/metrics.json")
                _log_eval_reports(cfg.eval)
            with staged_model(model_dir) as to_log:
                info = log_model(
                    to_log,
                    task=cfg.task,
                    card=model_card(cfg.name, cfg.model, digest, fields, missing),
                    metadata_={CONTENT_HASH_TAG: digest, "source": cfg.model, "lineage_missing": missing},
                )
            tags = {CONTENT_HASH_TAG: digest, "thinkflow.source": cfg.model, **ltags, **etags, **cfg.tags}
            mv = mlflow.register_model(info.model_uri, cfg.name, tags=tags)
            version = str(mv.version)
            created = True
        # Two registrations of the same content racing: keep the oldest version, drop ours.
        oldest = find_version(cfg.name, digest, client)
        if oldest is not None and str(oldest.version) != version:
            log.info(
                "model %s registered concurrently as version %s; dropping version %s",
                cfg.model,
                oldest.version,
                version,
            )
            try:
                client.delete_model_version(cfg.name, version)
            except MlflowException as exc:
                log.warning("could not delete duplicate version %s: %s", version, exc)
            version, run_id, created = str(oldest.version), oldest.run_id, False
    if created:
        client.set_registered_model_alias(cfg.name, CHALLENGER, version)
        if cfg.description:
            client.update_model_version(cfg.name, version, description=cfg.description)
    decision: GateDecision | None = None
    current = client.get_model_version(cfg.name, version)
    champion = current_champion(client, cfg.name)
    is_champion = champion is not None and str(champion.version) == version
    if cfg.promote and not is_champion and (created or eval_changed or "gate.decision" not in current.tags):
        decision = gate(cfg.name, version, cfg.gate, client=client)
    out_metrics: dict[str, float] = {"version": float(version), "created": float(created)}
    if decision is not None:
        out_metrics["promoted"] = float(decision.promoted)
        if decision.challenger_value is not None:
            out_metrics["challenger_value"] = decision.challenger_value
        if decision.champion_value is not None:
            out_metrics["champion_value"] = decision.champion_value
    artifacts = {"model_uri": f"models:/{cfg.name}/{version}", "content_hash": digest}
    if decision is not None:
        artifacts["gate"] = decision.decision
        artifacts["gate_reason"] = decision.reason
    if missing:
        artifacts["lineage_missing"] = ", ".join(missing) + ("" if lineage is not None else " (no lineage.json)")
    return StageResult(
        stage="register",
        output=f"models:/{cfg.name}/{version}",
        metrics=out_metrics,
        artifacts=artifacts,
        mlflow_run_id=run_id,
    )


def _log_eval_reports(eval_uri: str) -> None:
    """Attach the evaluation's report files to the register run (best effort: the metrics are already logged)."""
    import mlflow

    if eval_uri.endswith(".json"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("report.md", "report.html", "benchmarks.png", "aha.png", "training_curves.png"):
            uri = storage.join(eval_uri, name)
            try:
                if not storage.exists(uri):
                    continue
                target = Path(tmp, name)
                if storage.is_remote(uri):
                    storage.download(uri, target)
                else:
                    target.write_bytes(Path(uri).read_bytes())
                mlflow.log_artifact(str(target), artifact_path="eval")
            except (OSError, storage.StorageError) as exc:
                log.warning("eval report %s not attached: %s", uri, exc)


def list_versions(name: str) -> list[dict[str, Any]]:
    """Every version of ``name``: version, aliases, created time, status, gate decision and key metrics."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"no registered model named {name!r} ({exc.error_code})") from None
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in sorted(_search_versions(client, f"name = '{_quote(name)}'"), key=lambda v: int(v.version)):
        tags = mv.tags or {}
        metrics = {
            k.removeprefix("eval."): float(v)
            for k, v in tags.items()
            if k.startswith("eval.") and (k.endswith(".score") or k == "eval.overall.mean_score") and _is_number(v)
        }
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
                "status": mv.status,
                "content_hash": tags.get(CONTENT_HASH_TAG, ""),
                "gate": tags.get("gate.decision", ""),
                "promote_reason": tags.get("promote.reason", ""),
                "metrics": metrics,
                "source": tags.get("thinkflow.source", mv.source),
                "run_id": mv.run_id,
            }
        )
    return rows


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
