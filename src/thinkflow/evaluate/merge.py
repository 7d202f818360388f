"""Join the parts of a fanned-out evaluation: ``thinkflow evaluate-merge PART… -o OUT``.

``thinkflow.evaluate.merge.run(cfg: MergeEvalConfig) -> StageResult``. Each part is the output of
``thinkflow evaluate`` with ``part: NAME`` (one benchmark of one evaluation config; a pipeline runs them as
parallel GPU tasks). The merge

1. checks the parts: one evaluation config (apart from ``part``), every benchmark of that config exactly once;
2. concatenates their scored predictions in the config's benchmark order (the order one task answers them in);
3. re-summarizes and writes ``metrics.json``, ``predictions.jsonl`` and the reports with
   `thinkflow.evaluate.outputs.finish`, the code the single-task evaluation ends with.

So the merged ``metrics.json`` is the one-task evaluation's on the same predictions, except for what is not a
function of the predictions: ``generation_seconds`` (the sum of the parts' generation times), ``backend``
(the parts' backends, joined with ``+`` when they differ) and ``config.output_dir`` (the merge's output).
"""

from __future__ import annotations

import json
from typing import Any

from PIL import Image
from pydantic import Field

from thinkflow import storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.evaluate.config import EvalConfig, eval_set_hash
from thinkflow.evaluate.outputs import BASE_PREDICTIONS_FILE, METRICS_FILE, PREDICTIONS_FILE


class MergeEvalConfig(StageConfig):
    """Merge the per-benchmark parts of one evaluation into the one evaluation's outputs."""

    parts: list[str] = Field(
        min_length=1, description="Output dirs (or s3:// URIs) of `thinkflow evaluate` runs with `part` set."
    )
    output_dir: str = Field(default=".thinkflow/eval", min_length=1, description="Where the merged evaluation goes.")


def _thumbnails(uri: str, preds: list[dict[str, Any]]) -> dict[tuple[str, str], Image.Image]:
    """The example thumbnails a part's report wrote, by (benchmark, id): the merged report picks among them."""
    from thinkflow.evaluate.report import EXAMPLES_DIR, thumbnail_name

    local = storage.localize(uri) / EXAMPLES_DIR
    found = {}
    for p in preds:
        key = (str(p["benchmark"]), str(p["id"]))
        path = local / thumbnail_name(*key)
        if path.is_file():
            with Image.open(path) as im:
                found[key] = im.copy()
    return found


def _read_part(uri: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]] | None]:
    from thinkflow.records import read_jsonl

    try:
        local = storage.localize(uri)
    except storage.StorageError as exc:
        raise ValueError(f"evaluation part {uri}: {exc}") from None
    try:
        doc = json.loads((local / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"evaluation part {uri}: unreadable {METRICS_FILE} ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ValueError(f"evaluation part {uri}: {METRICS_FILE} has no `config` (not an evaluation's output)")
    if not (local / PREDICTIONS_FILE).is_file():
        raise ValueError(f"evaluation part {uri}: no {PREDICTIONS_FILE}")
    preds = list(read_jsonl(local / PREDICTIONS_FILE))
    base = list(read_jsonl(local / BASE_PREDICTIONS_FILE)) if (local / BASE_PREDICTIONS_FILE).is_file() else None
    return doc, preds, base


def run(cfg: MergeEvalConfig) -> StageResult:
    """Merge ``cfg.parts`` into ``cfg.output_dir``; returns what `thinkflow.evaluate.run` returns."""
    from thinkflow.evaluate.outputs import finish
    from thinkflow.evaluate.report import load_reference
    from thinkflow.tracking import stage_run

    storage.check_writable(cfg.output_dir, "output_dir")
    read = [(uri, *_read_part(uri)) for uri in cfg.parts]
    by_name: dict[str, tuple[str, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]] | None]] = {}
    whole: EvalConfig | None = None
    for uri, doc, preds, base_rows in read:
        part_cfg = EvalConfig.model_validate(doc["config"])
        if part_cfg.part is None:
            raise ValueError(f"evaluation part {uri}: evaluated without `part` (a whole evaluation, not a part)")
        if part_cfg.part in by_name:
            raise ValueError(f"evaluation parts {by_name[part_cfg.part][0]} and {uri}: both evaluate {part_cfg.part!r}")
        same = part_cfg.model_copy(update={"part": None, "output_dir": cfg.output_dir})
        if whole is None:
            whole = same
        elif same.model_dump(mode="json") != whole.model_dump(mode="json"):
            first, mine = whole.model_dump(mode="json"), same.model_dump(mode="json")
            keys = sorted(k for k in first if first[k] != mine[k])
            raise ValueError(f"evaluation part {uri}: another evaluation config than {read[0][0]} ({', '.join(keys)})")
        by_name[part_cfg.part] = (uri, doc, preds, base_rows)
    assert whole is not None  # parts has min_length 1
    specs = whole.benchmarks()
    names = list(dict.fromkeys(s.name for s in specs))
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"evaluation parts: no part for {', '.join(missing)} (parts: {', '.join(by_name)})")
    ordered = [by_name[n] for n in names]
    predictions = [p for _, _, preds, _ in ordered for p in preds]
    bases = [(uri, doc.get("base"), base) for uri, doc, _, base in ordered]
    base: tuple[str, list[dict[str, Any]]] | None = None
    if any(b is not None for _, _, b in bases):
        lacking = [uri for uri, summary, b in bases if b is None or not isinstance(summary, dict)]
        if lacking:
            raise ValueError(f"evaluation parts: {', '.join(lacking)} have no {BASE_PREDICTIONS_FILE} (others do)")
        base_model = str(ordered[0][1]["base"]["model"])
        base = (base_model, [p for _, _, b in bases for p in b or []])
    backends = list(dict.fromkeys(str(doc.get("backend")) for _, doc, _, _ in ordered))
    judge_failures = sum(int(doc.get("overall", {}).get("judge_failures", 0)) for _, doc, _, _ in ordered)
    lineage = ordered[0][1].get("lineage")
    reference = load_reference(whole.reference) if whole.reference else None
    with stage_run("evaluate", whole.model_dump(mode="json")) as active:
        return finish(
            whole,
            specs,
            predictions,
            base,
            set_hash=eval_set_hash(predictions, whole),
            backend="+".join(backends),
            generation_seconds=sum(float(doc.get("generation_seconds", 0.0)) for _, doc, _, _ in ordered),
            judge_failures=judge_failures,
            lineage=lineage if isinstance(lineage, dict) else None,
            reference=reference,
            run_id=active.info.run_id,
            thumbnails={k: v for uri, _, preds, _ in ordered for k, v in _thumbnails(uri, preds).items()},
        )
