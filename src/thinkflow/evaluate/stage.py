"""The evaluation stage: ``thinkflow.evaluate.run(cfg: EvalConfig) -> StageResult``.

Reads the benchmarks (or a built dataset's ``eval`` split), answers every question with the model under
the paper's evaluation settings, scores through `thinkflow.rewards`, and hands the scored predictions to
`thinkflow.evaluate.outputs.finish`, which writes ``predictions.jsonl``, ``metrics.json``, ``report.md``,
``report.html`` and the plots to ``output_dir`` (local or ``s3://``) and logs them to the stage's MLflow run.
Answers are kept in a partial file as they are generated, so a rerun after a failure reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from thinkflow import storage
from thinkflow.config import StageResult
from thinkflow.evaluate.config import EvalConfig, eval_set_hash

log = logging.getLogger(__name__)


def _model_lineage(model: str) -> dict[str, Any] | None:
    try:
        uri = storage.join(model, "lineage.json")
        if storage.exists(uri):
            data = json.loads(storage.read_text(uri))
            return data if isinstance(data, dict) else None
    except (OSError, ValueError, storage.StorageError) as exc:
        log.warning("model %s: unreadable lineage.json (%s)", model, exc)
    return None


PARTIAL_FILE = "completions.partial.jsonl"  # answers written as they are generated; removed when done


def partial_path(cfg: EvalConfig) -> Path:
    """Where the completions of an unfinished evaluation are kept: in a local output folder, else the cache."""
    if not storage.is_remote(cfg.output_dir):
        return Path(cfg.output_dir) / PARTIAL_FILE
    digest = hashlib.sha256(cfg.output_dir.rstrip("/").encode()).hexdigest()[:12]
    return storage.cache_dir() / "eval" / digest / PARTIAL_FILE


def read_partial(path: Path, key: str) -> dict[tuple[str, str], tuple[str, int]]:
    """Completions kept by an earlier attempt of the same evaluation (same model, eval set and protocol)."""
    done: dict[tuple[str, str], tuple[str, int]] = {}
    if not path.is_file():
        return done
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
            if isinstance(row, dict) and row.get("key") == key:
                done[(str(row["benchmark"]), str(row["id"]))] = (str(row["completion"]), int(row["length_tokens"]))
    return done


def _predictions(
    samples: list[Any], completions: list[str], lengths: list[int], scored: list[Any], cfg: EvalConfig
) -> list[dict[str, Any]]:
    from thinkflow.format import aha_counts

    return [
        {
            "id": s.id,
            "benchmark": s.benchmark,
            "group": s.group,
            "question": s.question,
            "solution": s.solution,
            "verifier_type": s.verifier_type,
            "completion": completion,
            "answer": sc.answer,
            "from_answer_tag": sc.from_answer_tag,
            "well_formed": sc.well_formed,
            "reward": sc.reward,
            "correct": sc.correct,
            "scored_by": sc.scored_by,
            "length_tokens": n_tokens,
            "aha": aha_counts(completion, cfg.aha_cues, cfg.aha_match),
            "meta": s.meta,
        }
        for s, completion, n_tokens, sc in zip(samples, completions, lengths, scored, strict=True)
    ]


def _base_model(cfg: EvalConfig, lineage: dict[str, Any] | None) -> str | None:
    """The model to evaluate as the "before": ``base_model``, or with ``lineage`` the one the model was trained from."""
    if cfg.base_model != "lineage":
        return cfg.base_model
    base = (lineage or {}).get("base_model")
    found = base.get("uri") if isinstance(base, dict) else base
    if not found:
        log.warning("base_model: lineage: %s has no lineage.json naming its base model; no before/after", cfg.model)
    return str(found) if found else None


def preflight(cfg: EvalConfig) -> None:
    """Checks before a model is loaded or a run created: the model folder (with its processor), a built
    dataset's split (JSON lines, records, images) and the output location (writable)."""
    from thinkflow.data.loader import check_split
    from thinkflow.models.load import processor_problem, resolve

    try:
        model_dir = resolve(cfg.model)
    except storage.StorageError as exc:
        raise FileNotFoundError(f"model {cfg.model}: {exc}") from None
    problem = processor_problem(model_dir)
    if problem:
        raise FileNotFoundError(f"model {cfg.model}: {problem}")
    if isinstance(cfg.data, str):
        check_split(cfg.data, cfg.split)
    storage.check_writable(cfg.output_dir, "output_dir")


def run(cfg: EvalConfig) -> StageResult:
    """Evaluate ``cfg.model``; returns the output dir, headline metrics and the report artifacts."""
    from thinkflow.evaluate.benchmarks import load_benchmark
    from thinkflow.evaluate.generate import generate_answers
    from thinkflow.evaluate.judge import check_reachable, rescore_with_judge
    from thinkflow.evaluate.outputs import finish
    from thinkflow.evaluate.report import load_reference
    from thinkflow.evaluate.score import score_predictions
    from thinkflow.rewards import MixedReward
    from thinkflow.tracking import stage_run

    preflight(cfg)
    specs = cfg.benchmarks()
    samples = []
    for spec in specs:
        loaded = load_benchmark(spec.name, spec.path, split=spec.split, limit=spec.limit, fields=spec.fields)
        log.info("benchmark %s: %d samples from %s", spec.name, len(loaded), spec.path)
        samples.extend(loaded)
    reward = MixedReward(cfg.reward)
    try:
        reward.check([s.verifier_type for s in samples], where="the evaluation set")
    except ValueError as exc:
        raise ValueError(f"{exc} (evaluate keys: reward.scorer, reward.scorer_url / reward.scorer_model)") from None
    if cfg.judge is not None:
        check_reachable(cfg.judge)
    set_hash = eval_set_hash(samples, cfg)
    reference = load_reference(cfg.reference) if cfg.reference else None  # a bad file fails before generation
    lineage = _model_lineage(cfg.model)

    # Answers are appended to the partial file as they come; a rerun after a failure reuses them.
    partial = partial_path(cfg)
    key = hashlib.sha256(f"{set_hash}\0{cfg.model}\0{cfg.seed}".encode()).hexdigest()[:16]
    done = read_partial(partial, key)
    todo = [i for i, s in enumerate(samples) if (s.benchmark, s.id) not in done]
    if done:
        log.info("evaluate: reusing %d answers kept in %s", len(samples) - len(todo), partial)
    partial.parent.mkdir(parents=True, exist_ok=True)

    with stage_run("evaluate", cfg.model_dump(mode="json")) as active, open(partial, "a", encoding="utf-8") as keep:

        def kept(start: int, texts: list[str], counts: list[int]) -> None:
            for offset, (text, n) in enumerate(zip(texts, counts, strict=True)):
                s = samples[todo[start + offset]]
                row = {"key": key, "benchmark": s.benchmark, "id": s.id, "completion": text, "length_tokens": n}
                keep.write(json.dumps(row) + "\n")
                done[(s.benchmark, s.id)] = (text, n)
            keep.flush()

        # one generation protocol for the model and its "before" (the base model)
        protocol: dict[str, Any] = {
            "backend": cfg.backend,
            "max_new_tokens": cfg.max_new_tokens,
            "system_prompt": cfg.system_prompt,
            "max_pixels": cfg.max_pixels,
            "min_pixels": cfg.min_pixels,
            "temperature": cfg.temperature,
            "batch_size": cfg.batch_size,
            "dtype": cfg.dtype,
            "device": cfg.device,
            "seed": cfg.seed,
            "progress": cfg.progress,
            "vllm_args": cfg.vllm_args,
        }
        started = time.monotonic()
        texts, counts, backend = (
            generate_answers(
                cfg.model,
                [samples[i].image for i in todo],
                [samples[i].question for i in todo],
                **protocol,
                on_batch=kept,
            )
            if todo
            else ([], [], "reused")
        )
        gen_seconds = time.monotonic() - started
        for i, text, n in zip(todo, texts, counts, strict=True):  # what on_batch already kept stays as kept
            done.setdefault((samples[i].benchmark, samples[i].id), (text, n))
        completions = [done[(s.benchmark, s.id)][0] for s in samples]
        lengths = [done[(s.benchmark, s.id)][1] for s in samples]

        def score(texts: list[str]) -> list[Any]:  # the model's and the base model's answers alike
            return score_predictions(
                texts,
                [s.solution for s in samples],
                [s.verifier_type for s in samples],
                images=[s.image for s in samples],
                questions=[s.question for s in samples],
                fallback_to_raw=cfg.fallback_to_raw,
                thresholds=cfg.correct_thresholds,
                reward=reward,
            )

        scored = score(completions)
        judge_failures = 0
        if cfg.judge is not None:
            scored, judge_failures = rescore_with_judge(
                cfg.judge,
                scored,
                completions,
                [s.benchmark for s in samples],
                [s.question for s in samples],
                [s.solution for s in samples],
                [s.verifier_type for s in samples],
                images=[s.image for s in samples],
                thresholds=cfg.correct_thresholds,
                reward=reward,
            )
        predictions = _predictions(samples, completions, lengths, scored, cfg)
        base = None
        base_model = _base_model(cfg, lineage)
        if base_model:  # the "before": the base model on the same samples, same protocol
            base_texts, base_lengths, _ = generate_answers(
                base_model,
                [s.image for s in samples],
                [s.question for s in samples],
                **protocol,
            )
            base_scored = score(base_texts)
            base = (base_model, _predictions(samples, base_texts, base_lengths, base_scored, cfg))
        result = finish(
            cfg,
            specs,
            predictions,
            base,
            set_hash=set_hash,
            backend=backend,
            generation_seconds=gen_seconds,
            judge_failures=judge_failures,
            lineage=lineage,
            reference=reference,
            run_id=active.info.run_id,
            thumbnails={(s.benchmark, s.id): s.image for s in samples},
        )
        keep.close()
        partial.unlink(missing_ok=True)
        return result
