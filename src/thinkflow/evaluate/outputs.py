"""What an evaluation writes: ``finish`` summarizes scored predictions into ``metrics.json``, the predictions,
the report (with example predictions and their image thumbnails) and the MLflow logging. The end of both
`thinkflow.evaluate.run` and `thinkflow.evaluate.merge.run`, so a merged evaluation writes what one task would.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from thinkflow import storage
from thinkflow.config import StageResult
from thinkflow.evaluate.config import BenchmarkSpec, EvalConfig
from thinkflow.format import SYSTEM_PROMPT

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
BASE_PREDICTIONS_FILE = "base_predictions.jsonl"  # the base model's answers (with `base_model`)

Thumbnails = Mapping[tuple[str, str], Image.Image]  # (benchmark, id) -> the sample's image


def location(uri: str) -> str:
    """An absolute path for a local location (as given for ``s3://`` and ``models:/`` URIs): what a report names."""
    return uri if storage.is_remote(uri) or "://" in uri or uri.startswith("models:/") else str(Path(uri).resolve())


def example_candidates(predictions: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Per verifier type, the first ``k`` correct and the first ``k`` wrong predictions (in file order).

    `pick_examples` never goes past them, so the examples of a whole evaluation are among its parts'
    candidates: a part keeps their thumbnails and the merge shows what one task would have shown."""
    seen: dict[tuple[str, bool], int] = {}
    out = []
    for p in predictions:
        key = (str(p["verifier_type"]), bool(p["correct"]))
        if seen.get(key, 0) < k:
            seen[key] = seen.get(key, 0) + 1
            out.append(p)
    return out


def pick_examples(predictions: list[dict[str, Any]], k: int, available: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Up to ``k`` predictions that have an image: per verifier type in turn, a correct and a wrong one where both
    exist, so the handful shows what the model gets right and wrong (deterministic: the first in file order)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for p in example_candidates(predictions, k):
        if (str(p["benchmark"]), str(p["id"])) in available:
            by_type.setdefault(str(p["verifier_type"]), []).append(p)
    queues = []
    for rows in by_type.values():
        right = [p for p in rows if p["correct"]]
        wrong = [p for p in rows if not p["correct"]]
        n = min(len(right), len(wrong))
        queues.append([p for pair in zip(right, wrong, strict=False) for p in pair] + right[n:] + wrong[n:])
    picked: list[dict[str, Any]] = []
    while len(picked) < k and any(queues):
        for queue in queues:
            if queue and len(picked) < k:
                picked.append(queue.pop(0))
    return picked


def finish(
    cfg: EvalConfig,
    specs: list[BenchmarkSpec],
    predictions: list[dict[str, Any]],
    base: tuple[str, list[dict[str, Any]]] | None,
    *,
    set_hash: str,
    backend: str,
    generation_seconds: float,
    judge_failures: int,
    lineage: dict[str, Any] | None,
    reference: Any,
    run_id: str,
    thumbnails: Thumbnails | None = None,
) -> StageResult:
    """Summarize scored predictions and write ``metrics.json``, the predictions and the reports to
    ``cfg.output_dir`` (and the active MLflow run): the end of `run` and of `thinkflow.evaluate.merge.run`.

    ``thumbnails`` holds the images of the samples the report may show as examples (`pick_examples`)."""
    import mlflow

    from thinkflow.evaluate.benchmarks import adapter
    from thinkflow.evaluate.metrics import flatten_metrics, summarize
    from thinkflow.evaluate.report import (
        Example,
        load_baseline,
        run_location,
        save_thumbnail,
        training_curves,
        write_report,
    )
    from thinkflow.records import write_jsonl

    kinds = {spec.name: adapter(spec.name).score_kind for spec in specs}
    judged = set(cfg.judge.benchmarks) if cfg.judge is not None else set()
    scoring = {
        spec.name: f"judge ({cfg.judge.model})" if cfg.judge is not None and spec.name in judged else "rules"
        for spec in specs
    }
    summary = summarize(predictions, kinds, cfg.aha_cues, scoring)
    if cfg.judge is not None:
        summary["overall"]["judge_failures"] = float(judge_failures)
    if base is not None:
        base_summary = summarize(base[1], kinds, [])
        summary["base"] = {"model": base[0], **{k: base_summary[k] for k in ("overall", "per_verifier")}}
    metrics_doc: dict[str, Any] = {
        "model": cfg.model,
        "eval_set_hash": set_hash,
        "backend": backend,
        "benchmarks_spec": [s.model_dump(mode="json") for s in specs],
        **summary,
        "generation_seconds": generation_seconds,
        "lineage": {k: lineage.get(k) for k in ("stage", "git_sha", "mlflow_run_id")} if lineage else None,
        "config": cfg.model_dump(mode="json"),
    }
    baseline = None
    if cfg.baseline:
        try:
            baseline = load_baseline(cfg.baseline)
        except Exception as exc:  # a missing baseline must not fail the evaluation itself
            log.warning("baseline %s not used: %s", cfg.baseline, exc)
    curves = None
    train_run = cfg.train_run_id or (lineage or {}).get("mlflow_run_id")
    if train_run:
        try:
            curves = training_curves(str(train_run))
        except Exception as exc:  # the training run may live in another tracking server
            log.warning("training curves of run %s not available: %s", train_run, exc)
    flat = flatten_metrics(summary)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(cfg.output_dir) if not storage.is_remote(cfg.output_dir) else Path(tmp, "eval")
        local.mkdir(parents=True, exist_ok=True)
        write_jsonl(local / PREDICTIONS_FILE, predictions)
        if base is not None:
            write_jsonl(local / BASE_PREDICTIONS_FILE, base[1])
        (local / METRICS_FILE).write_text(json.dumps(metrics_doc, indent=2, default=str) + "\n", encoding="utf-8")
        facts = [
            ("data", ", ".join(f"{s.name}: {location(s.path)}" for s in specs)),
            ("eval set", set_hash[:16]),
            ("samples", str(len(predictions))),
            (
                "generation",
                f"{backend}, max_new_tokens={cfg.max_new_tokens}, "
                f"{'greedy' if cfg.temperature == 0 else f'temperature={cfg.temperature}'}, "
                f"max_pixels={cfg.max_pixels}",
            ),
            (
                "system prompt",
                "the VLAA-Thinker prompt"
                if cfg.system_prompt == SYSTEM_PROMPT
                else ("none" if not cfg.system_prompt else "custom"),
            ),
        ]
        if base is not None:
            facts.append(("before (base model)", location(base[0])))
        if train_run and curves is not None:
            facts.append(("training run", run_location(str(train_run))))
        images = thumbnails or {}
        if cfg.part is not None:  # what a merge of the parts may show (see example_candidates)
            for p in example_candidates(predictions, cfg.examples):
                key = (str(p["benchmark"]), str(p["id"]))
                if key in images:
                    save_thumbnail(images[key], local, *key)
        shown = pick_examples(predictions, cfg.examples, set(images))
        examples = [Example.of(p, images[(str(p["benchmark"]), str(p["id"]))]) for p in shown]
        paths = write_report(
            summary,
            local,
            model=location(cfg.model),
            baseline=baseline,
            curves=curves,
            facts=facts,
            reference=reference,
            examples=examples,
        )
        mlflow.log_metrics(flat)
        mlflow.set_tags({"thinkflow.eval_set_hash": set_hash, "thinkflow.model": cfg.model})
        mlflow.log_artifacts(str(local), artifact_path="eval")
        storage.publish(local, cfg.output_dir)
    artifacts = {
        "metrics": storage.join(cfg.output_dir, METRICS_FILE),
        "predictions": storage.join(cfg.output_dir, PREDICTIONS_FILE),
        **{name: storage.join(cfg.output_dir, p.name) for name, p in paths.items()},
    }
    before_after = ("overall.", "verifier.", "base.")  # base.*: the base model on the same samples
    headline = {k: v for k, v in flat.items() if k.startswith(before_after) or k.endswith(".score")}
    return StageResult(
        stage="evaluate", output=cfg.output_dir, metrics=headline, artifacts=artifacts, mlflow_run_id=run_id
    )
