"""Build a dataset: the six VLAA-Thinking steps, resumable after SIGKILL at any moment.

``thinkflow.data.build.run(cfg: BuildConfig) -> StageResult`` (CLI: ``thinkflow build --config FILE``).

1. **collect** – read every source, streamed (per-source sampling cap: the first ``max_samples`` of a seeded
   shuffle), validate the record and its
   image (missing, undecodable, bad box, unknown verifier type -> ``rejected.jsonl``), store the image under
   ``images/`` named by its SHA-256, and dedupe by image content hash (``dedupe: image``).
2. **caption** – a VLM teacher describes the image (plus source extras such as a CLEVR scene).
3. **reason** – a text-only reasoning teacher gets caption + question, answers as if it saw the image:
   ``<think>…</think>`` then the answer, normalised to ``<think>…</think><answer>…</answer>``.
4. **rewrite** – an LLM teacher points references to the caption/description at "the image" instead;
   dropped when the word count of the whole distilled answer (``<think>…</think><answer>…</answer>``)
   changes by more than ``rewrite.max_word_delta`` (15) between before and after the rewrite (the paper's
   length-gap filter). The rewriter gets the reasoning (``$reasoning``) or the whole answer (``$response``,
   the paper's rewrite prompt); with ``only_if_mentions`` a text that never mentions a caption is kept
   unchanged without a call (its gap would be 0 either way).
5. **verify** – keep only correct answers. ``verify.mode: rules`` (ThinkFlow's default): the rule-based
   verifier of ``thinkflow.rewards`` for the types in ``verify.rule_types``, an LLM judge (Yes/No) for the
   others; ``judge`` (the paper): the LLM judge on every sample.
6. **split** – a response with an aha cue (``wait``, ``again``, ``double-check``, …; ``aha_match: substring``,
   the paper's rule, or ``word``) -> ``rl``, else ``sft``;
   ``eval_fraction`` held out per verifier type by seed. Records whose source fixes a split keep it.

Steps 2-5 run only for records without a response (sources with reasoning traces, such as the VLAA files
or the synthetic set, skip them). Every finished step of every record is appended to a journal
(``.build/N-step.jsonl`` in the work dir) and fsynced before the record moves on; a restarted build skips
what the journals hold, so no record is lost or duplicated and no finished teacher call is repeated.
Teacher failures that may be transient (429/5xx after all retries, timeouts) are not journaled: the step
finishes the other records, then the build fails and the next run retries just those.

Output (``output_dir``: a directory or ``s3://`` URI; remote outputs are built in the local cache and
uploaded): ``sft.jsonl`` / ``rl.jsonl`` / ``eval.jsonl`` (when non-empty), ``images/``, ``rejected.jsonl``
and ``manifest.json`` (written last: counts, content hash, teachers, token totals, build config).

**Shards.** With ``shard: "I/N"`` (``thinkflow build --shard I/N``) steps 1-5 run only for the records whose
id hashes (BLAKE2b) to shard ``I``, with the shard's own journal, and ``output_dir`` receives a shard
(``shard.jsonl``, ``images/``, ``shard.json``); `thinkflow.data.merge` dedupes across the shards and runs
step 6. The unsharded build is literally shard ``0/1`` (built under the work dir) plus that merge, so the
shards of any ``N`` merge into the same bytes.

**Modules.** This module runs the build; the steps live beside it: `thinkflow.data.collect` (step 1),
`thinkflow.data.distill` (steps 2-5), `thinkflow.data.manifest` (the shard output, metrics, publishing through
`thinkflow.storage`) and `thinkflow.data.merge` (step 6 and the dataset manifest), over the work dir of
`thinkflow.data.workdir` and the config of `thinkflow.data.build_config`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from thinkflow import storage
from thinkflow.config import StageResult
from thinkflow.data.build_config import SHARD_FILE, SHARD_MANIFEST, BuildConfig, BuildError, shard_specs
from thinkflow.data.collect import collect
from thinkflow.data.distill import Distiller
from thinkflow.data.manifest import DATASET_FILES, SHARD_FILES, dataset_artifacts, metrics, publish, write_shard
from thinkflow.data.merge import merge_shards
from thinkflow.data.workdir import BuildState, locked, stage_dirs, write_atomic
from thinkflow.records import read_jsonl

# the build's config and error are imported from here by the CLI, the components and the tests
__all__ = ["BuildConfig", "BuildError", "rejection_summary", "run", "shard_specs"]


def _build(cfg: BuildConfig, shard_dir: Path, work: Path) -> dict[str, Any]:
    """Build one shard (the whole input when ``cfg.shard`` is unset) into ``shard_dir``; its manifest."""
    state = BuildState(cfg, shard_dir, work)
    try:
        fingerprint = state.check_fingerprint()
        fingerprint.pop("shard", None)  # shards of one build share the fingerprint the merge checks
        collected = collect(state)
        distilled = asyncio.run(Distiller(state).run(collected))
        manifest = write_shard(state, distilled, fingerprint)
        manifest["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_atomic(shard_dir / SHARD_MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode())
        return manifest
    finally:
        state.close()


def _run(cfg: BuildConfig, stage: Path, work: Path) -> dict[str, Any]:
    if cfg.shard:  # a shard output: the shard's files are the output
        manifest = _build(cfg, stage, work)
        if storage.is_remote(cfg.output_dir):
            publish(stage, cfg.output_dir, SHARD_FILES)
        return manifest
    # one code path: the unsharded build is shard 0/1 followed by the merge
    shard = _build(cfg, work / "shard", work)
    manifest = merge_shards([work / "shard"], stage, cfg)
    manifest["seconds"] = {**shard["seconds"], **manifest["seconds"]}
    manifest["cpu_seconds"] = shard["cpu_seconds"]
    manifest["calls_this_run"] = shard["calls_this_run"]
    write_atomic(stage / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    if storage.is_remote(cfg.output_dir):
        publish(stage, cfg.output_dir, DATASET_FILES)
    return manifest


def rejection_summary(path: Path, output: str, top: int = 5) -> str:
    """Why a build kept nothing: its rejections (``path``, the local ``rejected.jsonl`` of ``output``) counted by
    step and reason (the reason's text up to its first colon)."""
    reasons: Counter[str] = Counter()
    if path.is_file():
        for row in read_jsonl(path):
            kind = str(row.get("reason", "?")).split(":")[0].strip()[:80]
            reasons[f"{row.get('step', '?')}: {kind}"] += 1
    if not reasons:
        return "the sources yielded no candidates; check the sources' paths and max_samples"
    counted = ", ".join(f"{n}× {reason}" for reason, n in reasons.most_common(top))
    more = f", {len(reasons) - top} more kinds" if len(reasons) > top else ""
    return f"every candidate was rejected ({counted}{more}; see {storage.join(output, 'rejected.jsonl')})"


def run(cfg: BuildConfig) -> StageResult:
    """Build the dataset described by ``cfg`` (resuming from its journal if one exists).

    With ``cfg.shard = "I/N"`` only that shard is built and ``output_dir`` receives a shard (``shard.jsonl``,
    ``images/``, ``shard.json``); `thinkflow.data.merge.run` combines the N shards into the dataset, byte for
    byte the one the unsharded build writes.
    """
    stage, work = stage_dirs(cfg)
    run_id = None
    with locked(work):
        if cfg.tracking:
            import mlflow

            from thinkflow.tracking import stage_run

            with stage_run("build", cfg.model_dump(mode="json")) as active:
                run_id = active.info.run_id
                manifest = _run(cfg, stage, work)
                mlflow.log_metrics(metrics(manifest))
                if "content_hash" in manifest:
                    mlflow.set_tag("thinkflow.content_hash", manifest["content_hash"])
                mlflow.log_artifact(str(stage / (SHARD_MANIFEST if cfg.shard else "manifest.json")))
        else:
            manifest = _run(cfg, stage, work)
    if cfg.shard:
        artifacts = {
            "shard": storage.join(cfg.output_dir, SHARD_FILE),
            "manifest": storage.join(cfg.output_dir, SHARD_MANIFEST),
        }
    else:
        artifacts = dataset_artifacts(cfg.output_dir, manifest)
    return StageResult(
        stage="build", output=cfg.output_dir, metrics=metrics(manifest), artifacts=artifacts, mlflow_run_id=run_id
    )
