"""The evaluation stage: ``thinkflow.evaluate.run(cfg: EvalConfig) -> StageResult``.

Reads the benchmarks (or a built dataset's ``eval`` split), answers every question with the model under
the paper's evaluation settings, scores through `thinkflow.rewards`, and writes ``predictions.jsonl``,
``metrics.json``, ``report.md``, ``report.html`` and the plots to ``output_dir`` (local or ``s3://``). Metrics
and reports are logged to the stage's MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from thinkflow import storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.evaluate.judge import JudgeConfig
from thinkflow.format import AHA_CUES, SYSTEM_PROMPT, AhaMatch
from thinkflow.rewards.config import RewardConfig, default_scorer_model

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
BASE_PREDICTIONS_FILE = "base_predictions.jsonl"  # the base model's answers (with `base_model`)


class BenchmarkSpec(BaseModel):
    """One benchmark to evaluate: its adapter ``name`` and the ``path`` of its HF datasets copy."""

    model_config = ConfigDict(extra="forbid")

    name: str  # mathvista | mathvision | mathverse | dynamath | wemath | logicvista | dataset
    path: str = Field(min_length=1)  # local dir or s3:// URI
    split: str | None = None  # default: the benchmark's (testmini, test, sample_variant*, eval)
    limit: int | None = Field(default=None, gt=0)  # first N samples (N groups for DynaMath / WeMath)
    fields: dict[str, str] = Field(default_factory=dict)  # field-name overrides, e.g. {"question": "prompt"}

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from thinkflow.evaluate.benchmarks import ADAPTERS

        if value not in ADAPTERS:
            raise ValueError(f"unknown benchmark {value!r}; known: {', '.join(ADAPTERS)}")
        return value


def _parse_spec(item: Any) -> Any:
    """``"mathvista=s3://b/mathvista"`` -> ``{"name": "mathvista", "path": "s3://b/mathvista"}``."""
    if isinstance(item, str):
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"benchmark entry {item!r}: expected NAME=PATH (e.g. mathvista=s3://bench/mathvista)")
        return {"name": name.strip(), "path": path.strip()}
    return item


class EvalConfig(StageConfig):
    """Evaluate one model on benchmarks and/or a built dataset's eval split (the paper's settings by default)."""

    model: str = Field(default=".thinkflow/runs/tiny-grpo", min_length=1)  # model dir or s3:// URI
    # A built dataset (dir or s3://, its `split` is evaluated) or a list of benchmarks
    # ({name, path, split, limit, fields} or "name=path").
    data: str | list[BenchmarkSpec] = ".thinkflow/data"
    split: str = "eval"  # split of a built dataset given as a string `data`
    output_dir: str = Field(default=".thinkflow/eval", min_length=1)
    limit: int | None = Field(default=None, gt=0)  # at most N samples per benchmark (unless the entry sets its own)
    # Generation: the paper's evaluation settings
    backend: Literal["auto", "hf", "vllm"] = "auto"
    max_new_tokens: int = Field(default=800, gt=0)
    temperature: float = Field(default=0.0, ge=0.0)  # 0 = greedy
    # The VLAA-Thinker system prompt (thinkflow.format.SYSTEM_PROMPT); "" sends none.
    system_prompt: str = SYSTEM_PROMPT
    # Image resolution bounds (pixels) for the Qwen2(.5)-VL processor; the paper evaluates with
    # max_pixels 256*32*32 (= 262144). None keeps the processor's own bounds.
    max_pixels: int | None = Field(default=256 * 32 * 32, gt=0)
    min_pixels: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=8, gt=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    device: str | None = None
    seed: int = Field(default=0, ge=0)
    # extra vllm.LLM arguments, e.g. {max_model_len: 8192, gpu_memory_utilization: 0.85, tensor_parallel_size: 2}
    vllm_args: dict[str, Any] = Field(default_factory=dict)
    # Scoring
    fallback_to_raw: bool = True  # no <answer> block: judge the visible text (VLMEvalKit-style)
    # reward >= threshold counts as correct (1.0 for types not listed)
    correct_thresholds: dict[str, float] = Field(default_factory=lambda: {"iou": 0.5, "open": 0.5})
    rewards: RewardConfig = Field(default_factory=RewardConfig)  # verifier settings; scorer for `open` samples
    # Optional LLM judge ({base_url, model, api_key_env, benchmarks}): extracts answers the rules miss on the
    # benchmarks VLMEvalKit judges. None: every benchmark is scored by rules (the report says which).
    judge: JudgeConfig | None = None
    aha_keywords: list[str] = Field(default_factory=lambda: list(AHA_CUES))
    aha_match: AhaMatch = "substring"  # the build's rule: substring (the paper's) or word
    # Report
    baseline: str | None = None  # metrics.json (file/dir/s3://) or models:/NAME@champion
    # Published scores shown beside this run (YAML/JSON {source, rows: {model: {benchmark: percent}}}).
    reference: str | None = None
    # Also evaluate this model on the same samples as the "before" (metrics.json `base`; the gate's floor for a
    # first version): a model dir / s3:// URI, or "lineage" for the model the evaluated one was trained from.
    base_model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _scorer_defaults_to_model(cls, data: Any) -> Any:
        return default_scorer_model(data, "rewards")

    train_run_id: str | None = None  # MLflow run of the training stage (default: lineage.json's mlflow_run_id)
    progress: bool = True
    # One task of a fanned-out evaluation: only the benchmark of this name (`dataset`: the built dataset's split).
    # Its output is a normal evaluation of that benchmark; `thinkflow.evaluate.merge` joins the parts into what
    # the whole evaluation in one task writes.
    part: str | None = None

    @field_validator("data", mode="before")
    @classmethod
    def _parse_data(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_parse_spec(v) for v in value]
        return value

    def benchmarks(self) -> list[BenchmarkSpec]:
        """The benchmarks this config evaluates (a string ``data`` is the built dataset's split)."""
        if isinstance(self.data, str):
            specs = [BenchmarkSpec(name="dataset", path=self.data, split=self.split, limit=self.limit)]
        elif not self.data:
            raise ValueError("data: the benchmark list is empty")
        else:
            specs = [b if b.limit or not self.limit else b.model_copy(update={"limit": self.limit}) for b in self.data]
        if self.part is None:
            return specs
        mine = [b for b in specs if b.name == self.part]
        if not mine:
            raise ValueError(f"part: {self.part!r} is not among the benchmarks ({', '.join(b.name for b in specs)})")
        return mine


def eval_set_hash(samples: list[Any], cfg: EvalConfig) -> str:
    """Identity of the eval set and protocol: every (benchmark, id, question, solution) plus the generation settings.

    Two evaluations are comparable (for the promotion gate) only when their hashes are equal.
    """
    h = hashlib.sha256()
    protocol: dict[str, Any] = {
        "system_prompt": cfg.system_prompt,
        "max_pixels": cfg.max_pixels,
        "min_pixels": cfg.min_pixels,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "fallback_to_raw": cfg.fallback_to_raw,
        "correct_thresholds": cfg.correct_thresholds,
        "max_answer_chars": cfg.rewards.max_answer_chars,
    }
    if any(_identity(s)[4] == "open" for s in samples):  # the reward model judges open-ended answers
        protocol["open"] = cfg.rewards.model_dump(mode="json", include={"scorer", "scorer_url", "scorer_model", "beta"})
    if cfg.judge is not None:  # the judge model is part of the protocol
        protocol["judge"] = {"model": cfg.judge.model, "benchmarks": sorted(cfg.judge.benchmarks)}
    h.update(json.dumps(protocol, sort_keys=True).encode())
    for row in sorted(map(_identity, samples)):
        h.update(json.dumps(list(row)).encode())
    return h.hexdigest()


def _identity(sample: Any) -> tuple[str, str, str, str, str]:
    """(benchmark, id, question, solution, verifier_type) of a loaded sample or of a prediction row."""
    keys = ("benchmark", "id", "question", "solution", "verifier_type")
    b, i, q, s, v = (sample[k] if isinstance(sample, dict) else getattr(sample, k) for k in keys)
    return b, i, q, s, v


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
            "aha": aha_counts(completion, cfg.aha_keywords, cfg.aha_match),
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
    reward = MixedReward(cfg.rewards)
    try:
        reward.check([s.verifier_type for s in samples], where="the evaluation set")
    except ValueError as exc:
        raise ValueError(f"{exc} (evaluate keys: rewards.scorer, rewards.scorer_url / rewards.scorer_model)") from None
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
        )
        keep.close()
        partial.unlink(missing_ok=True)
        return result


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
) -> StageResult:
    """Summarize scored predictions and write ``metrics.json``, the predictions and the reports to
    ``cfg.output_dir`` (and the active MLflow run): the end of `run` and of `thinkflow.evaluate.merge.run`."""
    import mlflow

    from thinkflow.evaluate.benchmarks import adapter
    from thinkflow.evaluate.metrics import flatten_metrics, summarize
    from thinkflow.evaluate.report import load_baseline, training_curves, write_report
    from thinkflow.records import write_jsonl

    kinds = {spec.name: adapter(spec.name).score_kind for spec in specs}
    judged = set(cfg.judge.benchmarks) if cfg.judge is not None else set()
    scoring = {
        spec.name: f"judge ({cfg.judge.model})" if cfg.judge is not None and spec.name in judged else "rules"
        for spec in specs
    }
    summary = summarize(predictions, kinds, cfg.aha_keywords, scoring)
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
        if train_run and curves:
            facts.append(("training run", str(train_run)))
        paths = write_report(
            summary, local, model=cfg.model, baseline=baseline, curves=curves, facts=facts, reference=reference
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
