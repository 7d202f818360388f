"""Step 1 of the build, **collect**: read every source, validate each record and its image, store the image
by content hash, dedupe, and journal the outcome of every candidate (``1-collect.jsonl``).

Sources are streamed; with ``max_samples`` a source's sample is the first ``max_samples`` positions of a
seeded shuffle. Rejections (missing or undecodable image, bad box, unknown verifier type, duplicates) are
journaled with their reason and end up in ``rejected.jsonl``.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from thinkflow import images
from thinkflow.data.build_config import IMAGE_EXT, BuildError, shard_of
from thinkflow.data.checks import known_verifier_types, solution_problem
from thinkflow.data.sources import Candidate, Source, iter_candidates, source_name
from thinkflow.data.workdir import BuildState, write_atomic
from thinkflow.records import RecordError, parse_record


def prepare(state: BuildState, cand: Candidate, known: tuple[str, ...]) -> tuple[str | None, dict[str, Any] | None]:
    """Validate one candidate and store its image under ``images/``; ``(error, record)``."""
    if cand.error:
        return cand.error, None
    rec = {"id": cand.id, "image": "pending", **cand.record}
    rec["meta"] = dict(rec.get("meta") or {})
    try:
        parse_record({k: v for k, v in rec.items() if v is not None})
    except RecordError as exc:
        return str(exc), None
    if rec["verifier_type"] not in known:
        return f"unknown verifier_type {rec['verifier_type']!r} (known: {', '.join(known)})", None
    if cand.image is None:
        return "no image", None
    limits = state.cfg.image_limits
    what = f"image {cand.image_ref!r}"
    try:
        data = cand.image(limits)
        info = images.probe(data, what=what, limits=limits)
    except images.ImageError as exc:
        return str(exc), None
    except OSError as exc:
        return f"cannot read {what}: {exc.strerror or exc}", None
    fmt, size = info.format, [info.width, info.height]
    problem = solution_problem(rec["verifier_type"], rec["solution"], size)
    if problem:
        return f"field 'solution' ({rec['verifier_type']}): {problem}", None
    digest = hashlib.sha256(data).hexdigest()
    rel = f"images/{digest[:32]}.{IMAGE_EXT.get(fmt, fmt.lower())}"
    target = state.stage / rel
    if not target.exists():
        write_atomic(target, data)
    rec["image"] = rel
    rec["meta"]["image_size"] = size
    rec["meta"]["image_sha256"] = digest
    return None, rec


def candidates(state: BuildState, si: int, src: Source) -> Iterator[tuple[int, int, Candidate]]:
    """``(rank, pos, candidate)`` of this shard's inputs of source ``si``, in the build's global order.

    Without a cap the order is the source's own and the source is streamed. With ``max_samples`` the
    sample is the first ``max_samples`` positions of a seeded shuffle (rejected candidates are not
    replaced, so every shard knows the sample without the others): one streaming pass counts, a second
    keeps this shard's part of the sample, which alone is held in memory.
    """
    cfg, name = state.cfg, source_name(src)
    index, count = state.shard

    def mine(cand: Candidate) -> bool:
        return count == 1 or shard_of(cand.id, count) == index

    if not src.max_samples:
        state.not_sampled[name] = 0
        for pos, cand in enumerate(iter_candidates(src, cfg.seed)):
            if mine(cand):
                yield pos, pos, cand
        return
    total = sum(1 for _ in iter_candidates(src, cfg.seed))
    order = list(range(total))
    random.Random(f"thinkflow-sample:{cfg.seed}:{si}:{name}").shuffle(order)
    rank = {pos: r for r, pos in enumerate(order[: src.max_samples])}
    del order
    state.not_sampled[name] = total - len(rank)
    picked = [
        (rank[pos], pos, cand) for pos, cand in enumerate(iter_candidates(src, cfg.seed)) if pos in rank and mine(cand)
    ]
    picked.sort(key=lambda t: t[0])
    yield from picked


def collect(state: BuildState) -> list[dict[str, Any]]:
    """Run step 1 (resuming from its journal); the journal entries of the records kept."""
    cfg = state.cfg
    journal = state.journal("collect")
    (state.stage / "images").mkdir(parents=True, exist_ok=True)
    known = known_verifier_types()
    seen_keys: dict[str, str] = {}
    kept_ids: set[str] = set()
    for e in journal:
        if e["status"] == "ok":
            kept_ids.add(e["record"]["id"])
            if e.get("dedupe"):
                seen_keys[e["dedupe"]] = e["record"]["id"]
    distill_ready = cfg.teachers.reason is not None
    for src in cfg.sources:
        if src.distill and not distill_ready:
            raise BuildError(f"source {source_name(src)} has distill: true but teachers.reason is not set")
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=cfg.image_workers) as pool:
        for si, src in enumerate(cfg.sources):
            name = source_name(src)
            bar = state.bar("collect", None, 0)
            bar.set_postfix_str(name)
            stream = candidates(state, si, src)
            while chunk := list(itertools.islice(stream, 4 * cfg.image_workers)):
                todo = [t for t in chunk if f"{si}:{t[1]}" not in journal]
                bar.update(len(chunk) - len(todo))
                results = pool.map(prepare, [state] * len(todo), [t[2] for t in todo], [known] * len(todo))
                for (rank, pos, cand), (error, rec) in zip(todo, results, strict=True):
                    key = f"{si}:{pos}"
                    if rec is not None and rec["id"] in kept_ids:  # same id -> same shard: exact
                        error, rec = f"duplicate id {cand.id!r}", None
                    dedupe = None
                    if rec is not None and cfg.dedupe != "none":
                        dedupe = rec["meta"]["image_sha256"]
                        if cfg.dedupe == "image_question":
                            dedupe += ":" + hashlib.sha256(rec["question"].encode()).hexdigest()[:16]
                        if dedupe in seen_keys:
                            error, rec = f"duplicate image (same as {seen_keys[dedupe]})", None
                        else:
                            seen_keys[dedupe] = cand.id
                    if rec is None:
                        journal.append(
                            {
                                "key": key,
                                "order": rank,
                                "status": "rejected",
                                "id": cand.id,
                                "source": name,
                                "reason": error,
                                "dedupe": dedupe,
                            }
                        )
                    else:
                        needs = rec.get("response") is None and (
                            src.distill if src.distill is not None else distill_ready
                        )
                        journal.append(
                            {
                                "key": key,
                                "order": rank,
                                "status": "ok",
                                "source": name,
                                "record": rec,
                                "dedupe": dedupe,
                                "distill": bool(needs),
                                "split_mode": src.split or "keep",
                                "extras": cand.extras,
                                "text_question": cand.text_question,
                            }
                        )
                        kept_ids.add(rec["id"])
                    bar.update(1)
                journal.sync()
            bar.close()
    state.seconds["collect"] = time.monotonic() - start
    return [e for e in journal if e["status"] == "ok"]
