"""The build's outputs: the shard a build writes after steps 1-5 (``shard.jsonl``, ``images/``, ``shard.json``),
the headline metrics of a shard or dataset manifest, and publishing either to an ``s3://`` output.

Step 6 (the split) and the dataset's ``manifest.json`` are the merge's (`thinkflow.data.merge.merge_shards`),
which the unsharded build runs over its one shard.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thinkflow import storage
from thinkflow.data.build_config import SHARD_FILE, SHARD_FORMAT, SHARD_MANIFEST, STEPS, BuildError
from thinkflow.data.workdir import BuildState, sha256_file, write_atomic
from thinkflow.records import SPLITS, read_jsonl, write_jsonl

if TYPE_CHECKING:  # the distiller imports the teachers' client, which a manifest does not need
    from thinkflow.data.distill import Item

DATASET_FILES: tuple[str, ...] = (*(f"{s}.jsonl" for s in SPLITS), "rejected.jsonl", "manifest.json")
SHARD_FILES: tuple[str, ...] = (SHARD_FILE, SHARD_MANIFEST)


def write_shard(state: BuildState, distilled: list[Item], fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Write the shard: ``shard.jsonl`` (every candidate of this shard in the build's global order: its
    record after steps 2-5, or the step and reason it was rejected), its images and ``shard.json``.

    Dedupe across shards, the split and the eval hold-out are the merge's (`thinkflow.data.merge`).
    """
    start = time.monotonic()
    by_id = {it.id: it for it in distilled}
    later = {r["id"]: r for r in _rejected(state) if r["step"] != "collect"}
    rows: list[dict[str, Any]] = []
    for e in state.journal("collect"):
        si, pos = (int(x) for x in str(e["key"]).split(":", 1))
        row: dict[str, Any] = {"order": [si, int(e.get("order", pos))], "source": e["source"]}
        if e.get("dedupe"):
            row["dedupe"] = e["dedupe"]
        if e["status"] != "ok":
            rows.append({**row, "id": e["id"], "step": "collect", "reason": e.get("reason", "")})
            continue
        rec = dict(e["record"])
        rec["meta"] = dict(rec.get("meta") or {})
        row["id"] = rec["id"]
        if e.get("distill"):
            item = by_id.get(rec["id"])
            if item is None:
                rejected = later.get(rec["id"])
                if rejected is None:
                    raise BuildError(f"record {rec['id']}: neither finished nor rejected in steps 2-5")
                rows.append({**row, "step": rejected["step"], "reason": rejected["reason"]})
                continue
            _apply(rec, item)
        rows.append({**row, "split_mode": e.get("split_mode") or "keep", "record": rec})
    rows.sort(key=lambda r: r["order"])
    write_jsonl(state.stage / SHARD_FILE, rows)
    referenced = {r["record"]["image"] for r in rows if "record" in r}
    for img in (state.stage / "images").iterdir():
        if f"images/{img.name}" not in referenced:  # rejected later, or a temp file of a killed run
            img.unlink()
    served: dict[str, set[str]] = defaultdict(set)
    for step in ("caption", "reason", "rewrite", "verify"):
        if step in state.journals:
            for e in state.journals[step]:
                if e.get("served"):
                    served["judge" if step == "verify" else step].add(e["served"])
    index, count = state.shard
    state.seconds["shard"] = time.monotonic() - start
    return {
        "format": SHARD_FORMAT,
        "shard": f"{index}/{count}",
        "fingerprint": hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest(),
        "candidates": len(rows),
        "kept": sum(1 for r in rows if "record" in r),
        "rejected": sum(1 for r in rows if "record" not in r),
        "sha256": sha256_file(state.stage / SHARD_FILE),
        "not_sampled": dict(state.not_sampled),
        "tokens": _tokens(state),
        "served_models": {k: sorted(v) for k, v in sorted(served.items())},
        "build_config": state.cfg.model_dump(mode="json"),
        "seconds": {k: round(v, 3) for k, v in state.seconds.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in state.cpu_seconds.items()},
        "calls_this_run": dict(state.calls_this_run),
    }


def _apply(rec: dict[str, Any], item: Item) -> None:
    teachers: dict[str, str] = {}
    tokens: dict[str, dict[str, int]] = {}
    for step in ("caption", "reason", "rewrite", "verify"):
        entry = item.outputs.get(step)
        if not entry or entry["status"] != "ok":
            continue
        out = entry.get("out", {})
        if "caption" in out:
            rec["caption"] = out["caption"]
        if "response" in out:
            rec["response"] = out["response"]
        if "method" in out:
            rec["meta"]["verified_by"] = out["method"]
        if entry.get("model"):
            teachers[step if step != "verify" else "judge"] = entry["model"]
        if entry.get("usage"):
            tokens[step] = {"prompt": entry["usage"]["prompt"], "completion": entry["usage"]["completion"]}
    rec["meta"]["teachers"] = teachers
    rec["meta"]["tokens"] = tokens


def _rejected(state: BuildState) -> list[dict[str, Any]]:
    rows = []
    for step in STEPS[:5]:
        if not state.has_journal(step):
            continue
        for e in state.journal(step):
            if e["status"] != "rejected":
                continue
            rid = e.get("id") or e["key"]  # steps 2-5 are keyed by record id
            rows.append({"id": rid, "source": e.get("source", ""), "step": step, "reason": e.get("reason", "")})
    if rows:
        source_of = {e["record"]["id"]: e["source"] for e in state.journal("collect") if e["status"] == "ok"}
        for row in rows:
            row["source"] = row["source"] or source_of.get(row["id"], "")
    return rows


def _tokens(state: BuildState) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for step in ("caption", "reason", "rewrite", "verify"):
        if not state.has_journal(step):
            continue
        t = {"calls": 0, "prompt": 0, "completion": 0, "attempts": 0}
        for e in state.journal(step):
            usage = e.get("usage")
            if usage:
                t["calls"] += 1
                t["prompt"] += int(usage.get("prompt", 0))
                t["completion"] += int(usage.get("completion", 0))
                t["attempts"] += int(usage.get("attempts", 1))
        totals[step if step != "verify" else "judge"] = t
    totals["total"] = {k: sum(v[k] for v in totals.values()) for k in ("calls", "prompt", "completion", "attempts")}
    return totals


def metrics(manifest: dict[str, Any]) -> dict[str, float]:
    """Headline metrics of a dataset manifest or of a shard manifest."""
    counts = manifest.get("counts")
    out: dict[str, float] = {}
    if counts is not None:
        out.update(records=counts["total"], rejected=counts["rejected"])
        for split in SPLITS:
            out[f"records_{split}"] = counts["split"].get(split, 0)
    else:
        out.update(candidates=manifest["candidates"], records=manifest["kept"], rejected=manifest["rejected"])
    for step, t in manifest["tokens"].items():
        out[f"tokens_{step}_prompt"] = t["prompt"]
        out[f"tokens_{step}_completion"] = t["completion"]
        out[f"calls_{step}"] = t["calls"]
    for step, seconds in manifest.get("seconds", {}).items():
        out[f"seconds_{step}"] = seconds
    return {k: float(v) for k, v in out.items()}


def dataset_artifacts(output: str, manifest: dict[str, Any]) -> dict[str, str]:
    """The URIs of a dataset's files (the split files it has), as a stage result lists them."""
    return {
        "manifest": storage.join(output, "manifest.json"),
        "rejected": storage.join(output, "rejected.jsonl"),
        **{s: storage.join(output, f"{s}.jsonl") for s in SPLITS if f"{s}.jsonl" in manifest["files"]},
    }


def publish(stage: Path, output: str, names: tuple[str, ...]) -> None:
    """Upload a dataset or a shard written in ``stage`` (not the journal) to the remote ``output`` so that the
    remote copy is exactly the local one (`thinkflow.storage.mirror`; images are named by content)."""
    try:
        storage.mirror(stage, output, list(names), content_dirs=("images",))
    except storage.StorageError as exc:
        raise BuildError(str(exc)) from None  # the build's one error type (the CLI's merge command catches it)


def tally(per: dict[str, Counter[str]], split: str, rec: dict[str, Any]) -> None:
    """Count one dataset record (of ``split``) into ``per`` (a ``defaultdict(Counter)``) for `record_counts`."""
    source = rec.get("source", "")
    per["split"][split] += 1
    per["source"][source] += 1
    per["verifier_type"][rec["verifier_type"]] += 1
    per[f"split/{split}/verifier_type"][rec["verifier_type"]] += 1
    per[f"split/{split}/source"][source] += 1


def record_counts(per: dict[str, Counter[str]]) -> dict[str, Any]:
    """The record part of a manifest's ``counts``: totals per split, source and verifier type, and by split."""
    return {
        "total": sum(per["split"].values()),
        "split": dict(sorted(per["split"].items())),
        "source": dict(sorted(per["source"].items())),
        "verifier_type": dict(sorted(per["verifier_type"].items())),
        "by_split": {
            s: {
                "verifier_type": dict(sorted(per[f"split/{s}/verifier_type"].items())),
                "source": dict(sorted(per[f"split/{s}/source"].items())),
            }
            for s in SPLITS
            if per["split"][s]
        },
    }


def content_hash(files: dict[str, dict[str, Any]]) -> str:
    """A dataset's identity: the SHA-256 over its split files' names and hashes, in split order."""
    content = hashlib.sha256()
    for split in SPLITS:
        info = files.get(f"{split}.jsonl")
        if info is not None:
            content.update(f"{split}.jsonl:{info['sha256']}\n".encode())
    return "sha256:" + content.hexdigest()


def rehash(root: Path) -> list[str]:
    """Refresh the ``manifest.json`` of the local dataset ``root`` after a deliberate hand edit of its split files:
    their record counts and SHA-256, the record counts and the content hash are recomputed (``rejected.jsonl`` is
    recounted when present). Returns what changed (empty: nothing did, and the manifest is left as it was);
    the manifest keeps the list under ``rehashed`` with the previous content hash, so the edit stays on record.
    """
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path}: cannot read the manifest to rehash ({exc}); rebuild the dataset instead") from None
    old_files: dict[str, dict[str, Any]] = manifest.get("files") or {}
    per: dict[str, Counter[str]] = defaultdict(Counter)
    files: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        name = f"{split}.jsonl"
        if (root / name).is_file():
            for rec in read_jsonl(root / name):
                tally(per, split, rec)
            files[name] = {"records": per["split"][split], "sha256": sha256_file(root / name)}
    changes = []
    for name in sorted(set(old_files) | set(files), key=lambda n: (n not in files, n)):
        old, new = old_files.get(name), files.get(name)
        if old is None:
            changes.append(f"{name}: added ({new['records'] if new else 0} records)")
        elif new is None:
            changes.append(f"{name}: removed (had {old.get('records')} records)")
        elif old != new:
            what = [f"{old.get('records')} -> {new['records']} records"] if old.get("records") != new["records"] else []
            what += [f"sha256 {str(old.get('sha256'))[:12]}… -> {new['sha256'][:12]}…"]
            changes.append(f"{name}: {', '.join(what)}")
    counts = {**(manifest.get("counts") or {}), **record_counts(per)}
    if (root / "rejected.jsonl").is_file():
        rejected = list(read_jsonl(root / "rejected.jsonl"))
        counts["rejected"] = len(rejected)
        counts["rejected_by_step"] = dict(Counter(str(r.get("step", "?")) for r in rejected))
    if counts != manifest.get("counts"):
        changes.append("counts recomputed")
    new_hash = content_hash(files)
    old_hash = manifest.get("content_hash")
    if new_hash != old_hash:
        changes.append(f"content_hash {old_hash} -> {new_hash}")
    if not changes:
        return []
    manifest.update(files=files, counts=counts, content_hash=new_hash)
    manifest.setdefault("rehashed", []).append(
        {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "previous_content_hash": old_hash,
            "changes": changes,
        }
    )
    write_atomic(path, json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    return changes
