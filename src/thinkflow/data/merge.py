"""Merge build shards into one dataset: ``thinkflow data merge SHARD… -o OUT``.

``thinkflow.data.merge.run(cfg: MergeConfig) -> StageResult``. The shards are the outputs of
``thinkflow build --shard I/N`` (all N of them, one build config); each holds ``shard.jsonl`` (every candidate
of the shard in the build's global order — source, then position or sampling rank — with its record after
steps 2-5 or where it was rejected), the images of its records and ``shard.json``. The merge

1. checks the shards: one fingerprint (same sources, seed, teachers, prompts), every ``I`` of ``0..N-1``
   exactly once, ``shard.jsonl`` matching the hash in ``shard.json``;
2. dedupes across shards in the global order (the first record with an image wins, as in one process);
3. splits (step 6: aha cues -> ``rl``, the seeded per-type eval hold-out) over the merged records;
4. writes ``sft/rl/eval.jsonl``, ``images/``, ``rejected.jsonl`` (every shard's, one order) and
   ``manifest.json`` (counts, content hash, every shard's hash and token accounting, summed tokens).

The unsharded build is shard ``0/1`` followed by this merge, so a build split into any number of shards
writes the same bytes as the unsharded one. Shards are read twice as streams (dedupe/hold-out, then the
write), so the merge holds ids and dedupe keys in memory, not records.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from thinkflow import storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.data.build_config import (
    FORMAT,
    SHARD_FILE,
    SHARD_FORMAT,
    SHARD_MANIFEST,
    STEPS,
    BuildConfig,
    BuildError,
    parse_shard,
)
from thinkflow.data.manifest import (
    DATASET_FILES,
    content_hash,
    dataset_artifacts,
    metrics,
    publish,
    record_counts,
    tally,
)
from thinkflow.data.split import assign_split, stratified_eval
from thinkflow.data.workdir import locked, sha256_file, staging_dir, write_atomic
from thinkflow.format import has_aha
from thinkflow.records import SPLITS, parse_record, read_jsonl

STEP6_KEYS = ("eval_fraction", "aha_cues", "aha_match")


class MergeConfig(StageConfig):
    """Config of `run`: the shard outputs and where the dataset goes."""

    renamed_keys: ClassVar[dict[str, str]] = {"output": "output_dir"}

    shards: list[str] = Field(
        min_length=1, description="Shard outputs (dirs or s3:// URIs) of `thinkflow build --shard I/N`, all N."
    )
    output_dir: str = Field(description="Dataset directory or s3:// URI.")
    tracking: bool = Field(default=True, description="Log the run to MLflow.")


def _load_shards(dirs: list[Path]) -> list[dict[str, Any]]:
    manifests = []
    for d in dirs:
        path = d / SHARD_MANIFEST
        if not path.is_file():
            raise BuildError(f"{d} is not a build shard (no {SHARD_MANIFEST}); build it with --shard I/N")
        m = json.loads(path.read_text(encoding="utf-8"))
        if m.get("format") != SHARD_FORMAT:
            raise BuildError(f"{path}: format {m.get('format')!r}, expected {SHARD_FORMAT}")
        if sha256_file(d / SHARD_FILE) != m["sha256"]:
            raise BuildError(f"{d / SHARD_FILE} does not match the sha256 in {path} (changed or truncated)")
        m["dir"] = d
        manifests.append(m)
    first = manifests[0]
    counts = {parse_shard(m["shard"])[1] for m in manifests}
    if len(counts) > 1:
        raise BuildError(f"shards of different splits: {', '.join(m['shard'] for m in manifests)}")
    count = counts.pop()
    seen: dict[int, Path] = {}
    for m in manifests:
        if m["fingerprint"] != first["fingerprint"]:
            raise BuildError(
                f"shard {m['dir']} was built with another config than {first['dir']} "
                "(sources, seed, dedupe, teachers, prompts or verify differ)"
            )
        for key in STEP6_KEYS:
            if m["build_config"][key] != first["build_config"][key]:
                raise BuildError(f"shard {m['dir']} has another {key} than {first['dir']}")
        index = parse_shard(m["shard"])[0]
        if index in seen:
            raise BuildError(f"shard {index}/{count} given twice: {seen[index]} and {m['dir']}")
        seen[index] = m["dir"]
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise BuildError(f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing)} of {count}")
    return sorted(manifests, key=lambda m: parse_shard(m["shard"])[0])


def _rows(manifests: list[dict[str, Any]]) -> Iterator[tuple[list[int], int, dict[str, Any]]]:
    """Every shard's rows in the build's global order (each shard file is already in that order)."""

    def stream(k: int) -> Iterator[tuple[list[int], int, dict[str, Any]]]:
        for row in read_jsonl(manifests[k]["dir"] / SHARD_FILE):
            yield row["order"], k, row

    return heapq.merge(*(stream(k) for k in range(len(manifests))), key=lambda t: (t[0], t[1]))


def _sum_tokens(manifests: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for m in manifests:
        for step, t in m["tokens"].items():
            acc = totals.setdefault(step, {k: 0 for k in ("calls", "prompt", "completion", "attempts")})
            for k in acc:
                acc[k] += int(t.get(k, 0))
    total = totals.pop("total", None) or {k: 0 for k in ("calls", "prompt", "completion", "attempts")}
    return {**totals, "total": total}


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # same filesystem (the unsharded build): no copy
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def merge_shards(
    dirs: list[Path], stage: Path, build: BuildConfig | None = None, output_dir: str | None = None
) -> dict[str, Any]:
    """Merge local shard dirs into the dataset dir ``stage``; returns the manifest (also written there).

    ``build``: the config of the step-6 settings and of ``manifest.build_config`` (default: the shards',
    with ``output_dir``).
    """
    start = time.monotonic()
    manifests = _load_shards(dirs)
    first = manifests[0]
    if build is None:
        base = {**first["build_config"], "shard": None, "work_dir": None}
        base.pop("output", None)  # a shard of a build before `output` became `output_dir`
        base["output_dir"] = output_dir or str(stage)
        build = BuildConfig.model_validate(base)
    cfg = build

    # pass 1: dedupe across shards in the global order, and the eval hold-out over what survives
    winner: dict[str, str] = {}
    losers: dict[str, str] = {}  # id -> winner id
    rejected: list[tuple[int, list[int], dict[str, Any]]] = []
    auto: list[dict[str, Any]] = []
    for order, _, row in _rows(manifests):
        key = row.get("dedupe")
        if row.get("step") == "collect":
            if key:  # an image duplicate inside its shard: name the global first
                row["reason"] = f"duplicate image (same as {winner.get(key, '?')})"
            rejected.append((0, order, row))
            continue
        if key and key in winner:
            losers[row["id"]] = winner[key]
            rejected.append(
                (0, order, {**row, "step": "collect", "reason": f"duplicate image (same as {winner[key]})"})
            )
            continue
        if key:
            winner[key] = row["id"]
        if "record" not in row:
            rejected.append((STEPS.index(row["step"]), order, row))
            continue
        rec, mode = row["record"], row["split_mode"]
        if mode == "auto" or (mode == "keep" and not rec.get("split")):
            auto.append({"id": rec["id"], "verifier_type": rec["verifier_type"]})
    held_out = stratified_eval(auto, cfg.eval_fraction, cfg.seed)
    del auto, winner

    # pass 2: split and write
    (stage / "images").mkdir(parents=True, exist_ok=True)
    tmp = {s: stage / f".{s}.jsonl.tmp" for s in SPLITS}
    handles = {s: open(tmp[s], "w", encoding="utf-8") for s in SPLITS}  # noqa: SIM115 - closed below
    per: dict[str, Counter[str]] = defaultdict(Counter)
    referenced: set[str] = set()
    split_rejects: list[dict[str, Any]] = []
    try:
        for _, k, row in _rows(manifests):
            if "record" not in row or row["id"] in losers:
                continue
            rec = row["record"]
            if rec.get("response"):
                rec["meta"]["aha"] = has_aha(rec["response"], cfg.aha_cues, cfg.aha_match)
            split = assign_split(rec, row["split_mode"], rec["id"] in held_out, cfg.aha_cues, cfg.aha_match)
            if split == "sft" and not rec.get("response"):
                split_rejects.append(
                    {"id": rec["id"], "source": row["source"], "step": "split", "reason": "split sft needs a response"}
                )
                continue
            rec["split"] = split
            final = parse_record({k2: v for k2, v in rec.items() if v is not None}, where="build output")
            out = final.model_dump(exclude_none=True)
            handles[split].write(json.dumps(out, ensure_ascii=False) + "\n")
            _link(manifests[k]["dir"] / out["image"], stage / out["image"])
            referenced.add(out["image"])
            tally(per, split, out)
    finally:
        for fh in handles.values():
            fh.close()
    files: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        path = stage / f"{split}.jsonl"
        if per["split"][split]:
            os.replace(tmp[split], path)
            digest = sha256_file(path)
            files[path.name] = {"records": per["split"][split], "sha256": digest}
        else:
            tmp[split].unlink()
            path.unlink(missing_ok=True)
    for img in (stage / "images").iterdir():
        if f"images/{img.name}" not in referenced:  # an earlier build's at this output
            img.unlink()
    rejected.sort(key=lambda t: (t[0], t[1]))
    rows = [
        {"id": r["id"], "source": r["source"], "step": r["step"], "reason": r["reason"]} for _, _, r in rejected
    ] + split_rejects
    tmp_rej = stage / ".rejected.jsonl.tmp"
    with open(tmp_rej, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp_rej, stage / "rejected.jsonl")

    served: dict[str, set[str]] = defaultdict(set)
    for m in manifests:
        for name, models in m["served_models"].items():
            served[name].update(models)
    not_sampled = first["not_sampled"]
    from thinkflow import __version__

    manifest = {
        "format": FORMAT,
        "content_hash": content_hash(files),
        "counts": {
            **record_counts(per),
            "rejected": len(rows),
            "rejected_by_step": dict(Counter(r["step"] for r in rows)),
            "not_sampled": {k: v for k, v in not_sampled.items() if v},
        },
        "files": files,
        "teachers": {
            name: {"model": tc.model, "base_url": tc.base_url, "served_models": sorted(served.get(name, ()))}
            for name, tc in cfg.teachers
            if tc is not None
        },
        "tokens": _sum_tokens(manifests),
        "shards": [
            {
                "shard": m["shard"],
                "sha256": m["sha256"],
                "candidates": m["candidates"],
                "kept": m["kept"],
                "tokens": m["tokens"]["total"],
            }
            for m in manifests
        ],
        "build_config": cfg.model_dump(mode="json"),
        "fingerprint": first["fingerprint"],
        "thinkflow_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": {"merge": round(time.monotonic() - start, 3)},
    }
    write_atomic(stage / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    return manifest


def _merge(cfg: MergeConfig, stage: Path) -> dict[str, Any]:
    try:
        dirs = [storage.localize(uri) for uri in cfg.shards]
    except storage.StorageError as exc:
        raise BuildError(f"cannot read a shard: {exc}") from None
    manifest = merge_shards(dirs, stage, output_dir=cfg.output_dir)
    if storage.is_remote(cfg.output_dir):
        publish(stage, cfg.output_dir, DATASET_FILES)
    return manifest


def run(cfg: MergeConfig) -> StageResult:
    """Merge the shards of a build into the dataset at ``cfg.output_dir``."""
    stage = staging_dir(cfg.output_dir, "merge")
    run_id = None
    with locked(stage / ".merge"):
        if cfg.tracking:
            import mlflow

            from thinkflow.tracking import stage_run

            with stage_run("merge", cfg.model_dump(mode="json")) as active:
                run_id = active.info.run_id
                manifest = _merge(cfg, stage)
                mlflow.log_metrics(metrics(manifest))
                mlflow.set_tag("thinkflow.content_hash", manifest["content_hash"])
                mlflow.log_artifact(str(stage / "manifest.json"))
        else:
            manifest = _merge(cfg, stage)
    return StageResult(
        stage="merge",
        output=cfg.output_dir,
        metrics=metrics(manifest),
        artifacts=dataset_artifacts(cfg.output_dir, manifest),
        mlflow_run_id=run_id,
    )
