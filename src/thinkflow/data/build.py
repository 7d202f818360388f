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

Output (``output``: a directory or ``s3://`` URI; remote outputs are built in the local cache and
uploaded): ``sft.jsonl`` / ``rl.jsonl`` / ``eval.jsonl`` (when non-empty), ``images/``, ``rejected.jsonl``
and ``manifest.json`` (written last: counts, content hash, teachers, token totals, build config).

**Shards.** With ``shard: "I/N"`` (``thinkflow build --shard I/N``) steps 1-5 run only for the records whose
id hashes (BLAKE2b) to shard ``I``, with the shard's own journal, and ``output`` receives a shard
(``shard.jsonl``, ``images/``, ``shard.json``); `thinkflow.data.merge` dedupes across the shards and runs
step 6. The unsharded build is literally shard ``0/1`` (built under the work dir) plus that merge, so the
shards of any ``N`` merge into the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from thinkflow import images, storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.data.checks import known_verifier_types, solution_problem
from thinkflow.data.journal import Journal
from thinkflow.data.prompts import Prompts, PromptsConfig
from thinkflow.data.sources import Candidate, Source, SyntheticSource, iter_candidates, source_name
from thinkflow.data.teachers import Teacher, TeacherConfig, TeacherError, image_part
from thinkflow.data.text import normalize_response, word_count
from thinkflow.errors import ThinkFlowError
from thinkflow.format import AHA_CUES, AhaMatch, format_response, response_parts, split_think
from thinkflow.images import ImageLimits
from thinkflow.records import SPLITS, RecordError, parse_record, read_jsonl, write_jsonl

STEPS: tuple[str, ...] = ("collect", "caption", "reason", "rewrite", "verify", "split")
FORMAT = "thinkflow.dataset/v1"
SHARD_FORMAT = "thinkflow.shard/v1"
SHARD_FILE = "shard.jsonl"
SHARD_MANIFEST = "shard.json"
WORK_DIRNAME = ".build"
IMAGE_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}
MENTIONS = r"\b(captions?|captioned|descriptions?|described|describes|the (?:given |provided )?text)\b"


class BuildError(ThinkFlowError, RuntimeError):
    """A build that cannot go on; the message says what to fix (or that a rerun retries what failed)."""


class TeachersConfig(BaseModel):
    """The teachers of steps 2-5; leave them unset to build without distillation."""

    model_config = ConfigDict(extra="forbid")

    caption: TeacherConfig | None = Field(default=None, description="Step 2: VLM that captions images.")
    reason: TeacherConfig | None = Field(default=None, description="Step 3: text-only reasoning model (R1-style).")
    rewrite: TeacherConfig | None = Field(default=None, description="Step 4: LLM that rewrites caption references.")
    judge: TeacherConfig | None = Field(
        default=None, description="Step 5: LLM judge for types without a rule verifier."
    )


class RewriteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Run step 4 (needs teachers.rewrite).")
    max_word_delta: int = Field(default=15, ge=0, description="Drop a rewrite that changes the word count by more.")
    only_if_mentions: bool = Field(
        default=True, description="Call the rewriter only when the reasoning mentions a caption/description."
    )
    mention_pattern: str = Field(default=MENTIONS, description="Regex (case-insensitive) of such mentions.")

    @field_validator("mention_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class VerifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Run step 5.")
    mode: Literal["rules", "judge"] = Field(
        default="rules",
        description="rules: rule verifiers for rule_types, the judge for the others (ThinkFlow); judge: the "
        "Yes/No judge on every sample (the paper: GPT-3.5-turbo).",
    )
    rule_types: list[str] = Field(
        default_factory=lambda: ["digit", "mcq", "math", "iou"],
        description="Verifier types checked by thinkflow.rewards (cheaper); the others go to teachers.judge.",
    )
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {"iou": 0.5}, description="Rule score needed to count as correct (default 1.0)."
    )


def _default_sources() -> list[Source]:
    return [SyntheticSource()]


class BuildConfig(StageConfig):
    """Config of `run`: sources, teachers, step options, output."""

    output: str = Field(description="Dataset directory or s3:// URI.")
    sources: list[Source] = Field(
        default_factory=lambda: _default_sources(), description="Inputs (default: 200 synthetic scenes)."
    )
    seed: int = Field(default=0, description="Seed for sampling caps, synthetic scenes and the eval hold-out.")
    dedupe: Literal["image", "image_question", "none"] = Field(
        default="image", description="Keep one record per image (the paper), per image+question, or all."
    )
    eval_fraction: float = Field(default=0.05, ge=0.0, lt=1.0, description="Held-out eval share of auto-split records.")
    aha_cues: list[str] = Field(default_factory=lambda: list(AHA_CUES), description="Step-6 cues (-> rl).")
    aha_match: AhaMatch = Field(
        default="substring",
        description="Step-6 cue test over the whole response: substring (the paper's any(cue in text.lower())) "
        "or word (whole words only).",
    )
    teachers: TeachersConfig = Field(default_factory=TeachersConfig)
    rewrite: RewriteConfig = Field(default_factory=RewriteConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    on_teacher_error: Literal["fail", "reject"] = Field(
        default="fail",
        description="After retries: fail the build at the end of the step (a rerun retries) or reject the record.",
    )
    work_dir: str | None = Field(default=None, description="Journal directory (default: OUTPUT/.build, or the cache).")
    shard: str | None = Field(
        default=None,
        description="'I/N': build only shard I of N (records chosen by a stable hash of their id) and write a "
        "shard output to `output`; `thinkflow data merge` combines the N shards into the dataset.",
    )
    image_workers: int = Field(default=8, ge=1, description="Threads reading/decoding images in step 1.")
    image_limits: ImageLimits = Field(
        default_factory=ImageLimits, description="Bounds on each source image (pixels, bytes); over them: rejected."
    )
    tracking: bool = Field(default=True, description="Log the run to MLflow.")
    progress: bool = Field(default=True, description="Show a progress bar per step.")

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; a clear error otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"shard must be 'I/N' with 0 <= I < N (e.g. 0/8), got {spec!r}")
    return int(m.group(1)), int(m.group(2))


def shard_specs(count: str | int) -> list[str]:
    """``["0/N", …, "N-1/N"]`` for a shard count given as text (a pipeline parameter) or a number."""
    try:
        n = int(str(count).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"build_shards must be a whole number >= 1, got {count!r}")
    return [f"{i}/{n}" for i in range(n)]


def shard_of(record_id: str, count: int) -> int:
    """The shard (of ``count``) a record id belongs to: BLAKE2b of the id, so it is the same in every process
    and every Python (unlike ``hash()``), and a shard's content never depends on the other shards."""
    digest = hashlib.blake2b(record_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass
class _Item:
    """A record going through steps 2-5."""

    id: str
    record: dict[str, Any]
    extras: str | None
    text_question: str | None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _fingerprint(cfg: BuildConfig, prompts: Prompts) -> dict[str, Any]:
    """What the journals of steps 1-5 depend on (endpoints, concurrency and step 6 may change freely)."""
    teachers = {
        name: t.model_dump(include={"model", "temperature", "max_tokens", "extra_body"}, mode="json")
        for name, t in cfg.teachers
        if t is not None
    }
    return {
        "sources": [s.model_dump(mode="json") for s in cfg.sources],
        "seed": cfg.seed,
        "dedupe": cfg.dedupe,
        "teachers": teachers,
        "rewrite": cfg.rewrite.model_dump(mode="json"),
        "verify": cfg.verify.model_dump(mode="json"),
        "prompts": prompts.digest(),
        "layout": 2,  # shard + merge: rank-based sampling cap, images in the shard dir
    }


@contextlib.contextmanager
def _locked(work: Path) -> Iterator[None]:
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(work / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another build is running with the work dir {work}") from None
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique: threads may write the same image
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Builder:
    def __init__(self, cfg: BuildConfig, stage: Path, work: Path) -> None:
        self.cfg = cfg
        self.shard = parse_shard(cfg.shard) if cfg.shard else (0, 1)
        self.stage = stage
        self.work = work
        self.prompts = Prompts(cfg.prompts)
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.calls_this_run: Counter[str] = Counter()
        self.not_sampled: dict[str, int] = {}  # per source: candidates outside the sampling cap
        self.journals: dict[str, Journal] = {}

    # ----------------------------------------------------------------------------------------------- plumbing
    def journal(self, step: str) -> Journal:
        if step not in self.journals:
            self.journals[step] = Journal(self.work / f"{STEPS.index(step) + 1}-{step}.jsonl")
        return self.journals[step]

    def close(self) -> None:
        for j in self.journals.values():
            j.close()

    def check_fingerprint(self) -> dict[str, Any]:
        fp = _fingerprint(self.cfg, self.prompts)
        if self.shard[1] > 1:
            fp["shard"] = "{}/{}".format(*self.shard)
        path = self.work / "fingerprint.json"
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if old != fp:
                keys = sorted(k for k in set(old) | set(fp) if old.get(k) != fp.get(k))
                raise BuildError(
                    f"{self.work} holds the journal of a build with a different config (differs in: "
                    f"{', '.join(keys)}); use another output/work_dir, or delete {self.work} to start over"
                )
        else:
            _write_atomic(path, json.dumps(fp, indent=2, sort_keys=True).encode())
        return fp

    def bar(self, step: str, total: int, initial: int) -> Any:
        return tqdm(
            total=total,
            initial=initial,
            desc=f"[{STEPS.index(step) + 1}/6] {step}",
            unit="rec",
            disable=not self.cfg.progress,
            mininterval=0.5,
        )

    # --------------------------------------------------------------------------------------------- step 1
    def _prepare(self, cand: Candidate, known: tuple[str, ...]) -> tuple[str | None, dict[str, Any] | None]:
        """Validate one candidate and store its image; ``(error, record)``."""
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
        what = f"image {cand.image_ref!r}"
        try:
            data = cand.image(self.cfg.image_limits)
            info = images.probe(data, what=what, limits=self.cfg.image_limits)
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
        target = self.stage / rel
        if not target.exists():
            _write_atomic(target, data)
        rec["image"] = rel
        rec["meta"]["image_size"] = size
        rec["meta"]["image_sha256"] = digest
        return None, rec

    def candidates(self, si: int, src: Source) -> Iterator[tuple[int, int, Candidate]]:
        """``(rank, pos, candidate)`` of this shard's inputs of source ``si``, in the build's global order.

        Without a cap the order is the source's own and the source is streamed. With ``max_samples`` the
        sample is the first ``max_samples`` positions of a seeded shuffle (rejected candidates are not
        replaced, so every shard knows the sample without the others): one streaming pass counts, a second
        keeps this shard's part of the sample, which alone is held in memory.
        """
        cfg, name = self.cfg, source_name(src)
        index, count = self.shard

        def mine(cand: Candidate) -> bool:
            return count == 1 or shard_of(cand.id, count) == index

        if not src.max_samples:
            self.not_sampled[name] = 0
            for pos, cand in enumerate(iter_candidates(src, cfg.seed)):
                if mine(cand):
                    yield pos, pos, cand
            return
        total = sum(1 for _ in iter_candidates(src, cfg.seed))
        order = list(range(total))
        random.Random(f"thinkflow-sample:{cfg.seed}:{si}:{name}").shuffle(order)
        rank = {pos: r for r, pos in enumerate(order[: src.max_samples])}
        del order
        self.not_sampled[name] = total - len(rank)
        picked = [
            (rank[pos], pos, cand)
            for pos, cand in enumerate(iter_candidates(src, cfg.seed))
            if pos in rank and mine(cand)
        ]
        picked.sort(key=lambda t: t[0])
        yield from picked

    def collect(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        journal = self.journal("collect")
        (self.stage / "images").mkdir(parents=True, exist_ok=True)
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
                bar = self.bar("collect", 0, 0)
                bar.total = None
                bar.set_postfix_str(name)
                stream = self.candidates(si, src)
                while chunk := list(itertools.islice(stream, 4 * cfg.image_workers)):
                    todo = [t for t in chunk if f"{si}:{t[1]}" not in journal]
                    bar.update(len(chunk) - len(todo))
                    results = pool.map(self._prepare, [t[2] for t in todo], [known] * len(todo))
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
        self.seconds["collect"] = time.monotonic() - start
        return [e for e in journal if e["status"] == "ok"]

    # ------------------------------------------------------------------------------------------ steps 2-5
    async def _run_step(
        self,
        step: str,
        items: list[_Item],
        fn: Callable[[_Item], Awaitable[dict[str, Any]]],
        teacher: Teacher | None,
    ) -> list[_Item]:
        concurrency, ramp_up = (teacher.cfg.concurrency, teacher.cfg.ramp_up) if teacher else (8, 0.0)
        journal = self.journal(step)
        pending = [it for it in items if it.id not in journal]
        if pending and teacher is not None:
            problem = await teacher.reachable()
            if problem:  # fail fast instead of retrying every record against a server that is not there
                raise BuildError(f"step {step}: {problem} — is the server running?")
        bar = self.bar(step, len(items), len(items) - len(pending))
        errors: list[str] = []
        queue = iter(pending)
        start, cpu = time.monotonic(), time.process_time()

        workers = max(1, min(concurrency, len(pending)))

        async def worker(k: int) -> None:
            if ramp_up and k:  # stagger the first requests: no burst of `concurrency` calls at once
                await asyncio.sleep(k * ramp_up / workers)
            for item in queue:
                try:
                    entry = await fn(item)
                except TeacherError as exc:
                    if exc.retryable and self.cfg.on_teacher_error == "fail":
                        errors.append(f"{item.id}: {exc}")
                        bar.update(1)
                        continue
                    entry = {"status": "rejected", "reason": str(exc)}
                entry["key"] = item.id
                if "usage" in entry:
                    self.calls_this_run[step] += 1
                journal.append_soon(entry)  # written now (a kill cannot lose it), fsynced in the background
                bar.update(1)

        try:
            async with asyncio.TaskGroup() as tg:
                for k in range(workers):
                    tg.create_task(worker(k))
        except ExceptionGroup as group:
            raise group.exceptions[0] from None
        finally:
            await journal.drain()  # everything finished in this step is on disk before the next step
            bar.close()
            self.seconds[step] = time.monotonic() - start
            self.cpu_seconds[step] = time.process_time() - cpu
        if errors:
            raise BuildError(
                f"step {step}: {len(errors)} of {len(pending)} records failed after retries "
                f"(first: {errors[0]}); the finished ones are journaled — run the build again to retry the rest"
            )
        survivors = []
        for item in items:
            entry = journal.get(item.id)
            if entry is not None and entry["status"] in ("ok", "skipped"):
                item.outputs[step] = entry
                survivors.append(item)
        return survivors

    def _teacher_entry(self, teacher: Teacher, reply: Any, out: dict[str, Any]) -> dict[str, Any]:
        return {"status": "ok", "out": out, "usage": reply.usage(), "model": teacher.cfg.model, "served": reply.model}

    def _teacher_reject(self, teacher: Teacher, reply: Any, reason: str) -> dict[str, Any]:
        return {
            "status": "rejected",
            "reason": reason,
            "usage": reply.usage(),
            "model": teacher.cfg.model,
            "served": reply.model,
        }

    async def distill(self, entries: list[dict[str, Any]]) -> list[_Item]:
        cfg = self.cfg
        items = [
            _Item(e["record"]["id"], e["record"], e.get("extras"), e.get("text_question"))
            for e in entries
            if e.get("distill")
        ]
        if not items:
            return []
        t = cfg.teachers
        assert t.reason is not None  # collect() only marks records for distillation when it is set
        need_caption = [i for i in items if not i.record.get("caption") and not i.text_question]
        if need_caption and t.caption is None:
            raise BuildError(
                f"{len(need_caption)} records need a caption (e.g. {need_caption[0].id}) "
                "but teachers.caption is not set"
            )
        if cfg.verify.enabled:
            types = {i.record["verifier_type"] for i in items}
            judged = sorted(types if cfg.verify.mode == "judge" else types - set(cfg.verify.rule_types))
            if judged and t.judge is None:
                raise BuildError(
                    f"verification of verifier_type {', '.join(judged)} needs teachers.judge "
                    f"(verify.mode={cfg.verify.mode}; or add the type to verify.rule_types with verify.mode=rules, "
                    "or set verify.enabled=false)"
                )
        if cfg.rewrite.enabled and t.rewrite is None:
            raise BuildError("rewrite.enabled is true but teachers.rewrite is not set (or set rewrite.enabled=false)")
        teachers = {name: Teacher(name, tc) for name, tc in t if tc is not None}
        try:
            caption, reason = teachers.get("caption"), teachers["reason"]
            rewrite, judge = teachers.get("rewrite"), teachers.get("judge")
            items = await self._run_step("caption", items, lambda it: self._caption(caption, it), caption)
            items = await self._run_step("reason", items, lambda it: self._reason(reason, it), reason)
            items = await self._run_step("rewrite", items, lambda it: self._rewrite(rewrite, it), rewrite)
            items = await self._run_step("verify", items, lambda it: self._verify(judge, it), judge)
        finally:
            for teacher in teachers.values():
                await teacher.aclose()
        return items

    async def _caption(self, teacher: Teacher | None, item: _Item) -> dict[str, Any]:
        if item.record.get("caption") or item.text_question:
            return {"status": "skipped", "reason": "has a caption" if item.record.get("caption") else "text question"}
        assert teacher is not None
        image = self.stage / item.record["image"]
        data = image.read_bytes()  # small files from the page cache: cheaper than a thread hop
        extras = (
            f"\nExtra information about this image, to use where the picture is unclear:\n{item.extras.strip()}"
            if item.extras
            else ""
        )
        prompt = self.prompts.render("caption", extras=extras)
        content = [image_part(data, image.suffix.lstrip(".")), {"type": "text", "text": prompt}]
        reply = await teacher.chat([{"role": "user", "content": content}])
        text = reply.text.strip()
        reasoning, rest = split_think(text)
        caption = rest if reasoning is not None else text
        if not caption:
            return self._teacher_reject(teacher, reply, "caption teacher returned no text")
        return self._teacher_entry(teacher, reply, {"caption": caption})

    async def _reason(self, teacher: Teacher, item: _Item) -> dict[str, Any]:
        if item.text_question:
            prompt = self.prompts.render("reason_text", question=item.text_question)
        else:
            caption = item.outputs.get("caption", {}).get("out", {}).get("caption") or item.record.get("caption") or ""
            prompt = self.prompts.render("reason", caption=caption, question=item.record["question"])
        reply = await teacher.chat([{"role": "user", "content": prompt}])
        text = reply.text
        if reply.reasoning and "</think>" not in text:
            text = f"<think>{reply.reasoning}</think>{text}"
        response = normalize_response(text, "", item.record["verifier_type"])
        if response is None:
            reasoning, _ = split_think(text)
            why = "no <think>…</think> reasoning" if not reasoning else "no final answer after </think>"
            if reply.finish_reason == "length":
                why += " (cut at max_tokens)"
            return self._teacher_reject(teacher, reply, f"reasoning output has {why}")
        return self._teacher_entry(teacher, reply, {"response": response})

    def _response(self, item: _Item) -> str:
        for step in ("rewrite", "reason"):
            out = item.outputs.get(step, {}).get("out", {})
            if out.get("response"):
                return str(out["response"])
        raise BuildError(f"record {item.id}: no response after step reason")

    async def _rewrite(self, teacher: Teacher | None, item: _Item) -> dict[str, Any]:
        rc = self.cfg.rewrite
        before = self._response(item)
        reasoning, answer = response_parts(before)
        if not rc.enabled:
            return {"status": "skipped", "reason": "rewrite disabled"}
        if rc.only_if_mentions and not re.search(rc.mention_pattern, reasoning, re.IGNORECASE):
            return {"status": "skipped", "reason": "no caption/description mention"}
        assert teacher is not None
        whole = self.prompts.uses("rewrite", "response")
        prompt = self.prompts.render("rewrite", reasoning=reasoning, response=before)
        reply = await teacher.chat([{"role": "user", "content": prompt}])
        new = reply.text.strip()
        if whole:  # the rewriter got the whole answer and returns it
            after = normalize_response(new, "", item.record["verifier_type"]) if new else None
            if after is None:
                return self._teacher_reject(teacher, reply, "rewrite: the answer lost its <think>…</think> structure")
        else:
            inner, rest = split_think(new)
            if inner is not None:
                new = rest or inner
            new = new.removeprefix("<think>").removesuffix("</think>").strip()
            if not new:
                return self._teacher_reject(teacher, reply, "rewrite: empty rewrite")
            after = format_response(new, answer)
        # the paper's filter: the whole distilled answer before vs after the rewrite
        delta = abs(word_count(after) - word_count(before))
        if delta > rc.max_word_delta:
            why = f"word count of the answer changed by {delta} (> {rc.max_word_delta})"
            return self._teacher_reject(teacher, reply, f"rewrite: {why}")
        return self._teacher_entry(teacher, reply, {"response": after})

    async def _verify(self, teacher: Teacher | None, item: _Item) -> dict[str, Any]:
        vc = self.cfg.verify
        if not vc.enabled:
            return {"status": "skipped", "reason": "verification disabled"}
        rec = item.record
        response = self._response(item)
        vtype = rec["verifier_type"]
        if vc.mode == "rules" and vtype in vc.rule_types:
            score = await asyncio.to_thread(_rule_score, response, rec["solution"], vtype, rec.get("meta") or {})
            threshold = vc.thresholds.get(vtype, 1.0)
            if score + 1e-9 >= threshold:
                return {"status": "ok", "out": {"method": "rule", "score": score}}
            return {"status": "rejected", "reason": f"verify (rule {vtype}): score {score:.3g} < {threshold:g}"}
        assert teacher is not None
        _, answer = response_parts(response)
        prompt = self.prompts.render("verify", question=rec["question"], solution=rec["solution"], answer=answer)
        reply = await teacher.chat([{"role": "user", "content": prompt}])
        verdict = _verdict(reply.text)
        if verdict is True:
            return self._teacher_entry(teacher, reply, {"method": "judge", "score": 1.0})
        why = "judged incorrect" if verdict is False else f"no Yes/No verdict in {reply.text.strip()[:60]!r}"
        return self._teacher_reject(teacher, reply, f"verify (judge): {why}")

    # ------------------------------------------------------------------------------------ the shard output
    def finish(self, distilled: list[_Item], fingerprint: dict[str, Any]) -> dict[str, Any]:
        """Write the shard: ``shard.jsonl`` (every candidate of this shard in the build's global order: its
        record after steps 2-5, or the step and reason it was rejected), its images and ``shard.json``.

        Dedupe across shards, the split and the eval hold-out are the merge's (`thinkflow.data.merge`).
        """
        start = time.monotonic()
        by_id = {it.id: it for it in distilled}
        later = {r["id"]: r for r in self._rejected() if r["step"] != "collect"}
        rows: list[dict[str, Any]] = []
        for e in self.journal("collect"):
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
                self._merge(rec, item)
            rows.append({**row, "split_mode": e.get("split_mode") or "keep", "record": rec})
        rows.sort(key=lambda r: r["order"])
        write_jsonl(self.stage / SHARD_FILE, rows)
        referenced = {r["record"]["image"] for r in rows if "record" in r}
        for img in (self.stage / "images").iterdir():
            if f"images/{img.name}" not in referenced:  # rejected later, or a temp file of a killed run
                img.unlink()
        served: dict[str, set[str]] = defaultdict(set)
        for step in ("caption", "reason", "rewrite", "verify"):
            if step in self.journals:
                for e in self.journals[step]:
                    if e.get("served"):
                        served["judge" if step == "verify" else step].add(e["served"])
        index, count = self.shard
        self.seconds["shard"] = time.monotonic() - start
        return {
            "format": SHARD_FORMAT,
            "shard": f"{index}/{count}",
            "fingerprint": hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest(),
            "candidates": len(rows),
            "kept": sum(1 for r in rows if "record" in r),
            "rejected": sum(1 for r in rows if "record" not in r),
            "sha256": _sha256_file(self.stage / SHARD_FILE),
            "not_sampled": dict(self.not_sampled),
            "tokens": self._tokens(),
            "served_models": {k: sorted(v) for k, v in sorted(served.items())},
            "build_config": self.cfg.model_dump(mode="json"),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "cpu_seconds": {k: round(v, 3) for k, v in self.cpu_seconds.items()},
            "calls_this_run": dict(self.calls_this_run),
        }

    def _merge(self, rec: dict[str, Any], item: _Item) -> None:
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

    def _rejected(self) -> list[dict[str, Any]]:
        rows = []
        for step in STEPS[:5]:
            if step not in self.journals and not (self.work / f"{STEPS.index(step) + 1}-{step}.jsonl").exists():
                continue
            for e in self.journal(step):
                if e["status"] != "rejected":
                    continue
                rid = e.get("id") or e["key"]  # steps 2-5 are keyed by record id
                rows.append({"id": rid, "source": e.get("source", ""), "step": step, "reason": e.get("reason", "")})
        if rows:
            source_of = {e["record"]["id"]: e["source"] for e in self.journal("collect") if e["status"] == "ok"}
            for row in rows:
                row["source"] = row["source"] or source_of.get(row["id"], "")
        return rows

    def _tokens(self) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for step in ("caption", "reason", "rewrite", "verify"):
            path = self.work / f"{STEPS.index(step) + 1}-{step}.jsonl"
            if step not in self.journals and not path.exists():
                continue
            t = {"calls": 0, "prompt": 0, "completion": 0, "attempts": 0}
            for e in self.journal(step):
                usage = e.get("usage")
                if usage:
                    t["calls"] += 1
                    t["prompt"] += int(usage.get("prompt", 0))
                    t["completion"] += int(usage.get("completion", 0))
                    t["attempts"] += int(usage.get("attempts", 1))
            totals[step if step != "verify" else "judge"] = t
        totals["total"] = {k: sum(v[k] for v in totals.values()) for k in ("calls", "prompt", "completion", "attempts")}
        return totals


def _verdict(text: str) -> bool | None:
    _, rest = split_think(text)
    m = re.search(r"\b(yes|no)\b", rest or text, re.IGNORECASE)
    return None if m is None else m.group(1).lower() == "yes"


def _rule_score(response: str, solution: str, vtype: str, meta: dict[str, Any]) -> float:
    """Score with the rule-based verifier of ``thinkflow.rewards`` (imported lazily)."""
    try:
        from thinkflow.rewards import score
    except ImportError as exc:
        raise BuildError(
            f"rule-based verification of {vtype!r} needs thinkflow.rewards ({exc}); "
            "remove the type from verify.rule_types to use the judge"
        ) from None
    ctx: dict[str, Any] = {}
    if vtype == "iou" and meta.get("image_size"):
        ctx["image_size"] = tuple(meta["image_size"])
    return float(score(response, solution, vtype, **ctx))


def _stage_dirs(cfg: BuildConfig) -> tuple[Path, Path]:
    if storage.is_remote(cfg.output):
        digest = hashlib.sha256(cfg.output.rstrip("/").encode()).hexdigest()[:16]
        stage = storage.cache_dir() / "build" / digest
    else:
        stage = Path(cfg.output).expanduser()
    work = Path(cfg.work_dir).expanduser() if cfg.work_dir else stage / WORK_DIRNAME
    stage.mkdir(parents=True, exist_ok=True)
    return stage, work


def _publish(stage: Path, output: str, names: list[str]) -> None:
    """Upload a dataset or a shard (not the journal) to a remote output; ``names`` in order, the last one (its
    manifest) last.

    Images already there are not sent again; files in ``names`` and images of an earlier build at the same
    URI that this one does not have are removed, so the remote copy is exactly the local one.
    """
    from minio.deleteobjects import DeleteObject
    from minio.error import S3Error

    bucket, prefix = storage.split_uri(output)
    prefix = prefix.rstrip("/")
    cli = storage.client()
    try:
        if not cli.bucket_exists(bucket):
            cli.make_bucket(bucket)
        img_prefix = f"{prefix}/images/" if prefix else "images/"
        remote_images = {
            (o.object_name or "")[len(img_prefix) :]
            for o in cli.list_objects(bucket, prefix=img_prefix, recursive=True)
        }
        local_images = {p.name for p in (stage / "images").iterdir()}
        for name in sorted(local_images - remote_images):
            cli.fput_object(bucket, img_prefix + name, str(stage / "images" / name))
        stale = [DeleteObject(img_prefix + name) for name in sorted(remote_images - local_images)]
        present = [name for name in names if (stage / name).exists()]
        stale += [DeleteObject(f"{prefix}/{name}" if prefix else name) for name in names if name not in present]
        for error in cli.remove_objects(bucket, stale):
            if error.code != "NoSuchKey":
                raise BuildError(f"cannot remove {error.name} from {output}: {error.message}")
        for name in present:
            cli.fput_object(bucket, f"{prefix}/{name}" if prefix else name, str(stage / name))
    except S3Error as exc:
        raise BuildError(f"cannot publish to {output}: {exc.code}: {exc.message}") from None


def _build(cfg: BuildConfig, shard_dir: Path, work: Path) -> dict[str, Any]:
    """Build one shard (the whole input when ``cfg.shard`` is unset) into ``shard_dir``; its manifest."""
    builder = _Builder(cfg, shard_dir, work)
    try:
        fingerprint = builder.check_fingerprint()
        fingerprint.pop("shard", None)  # shards of one build share the fingerprint the merge checks
        collected = builder.collect()
        distilled = asyncio.run(builder.distill(collected))
        manifest = builder.finish(distilled, fingerprint)
        manifest["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        _write_atomic(shard_dir / SHARD_MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode())
        return manifest
    finally:
        builder.close()


def _metrics(manifest: dict[str, Any]) -> dict[str, float]:
    """Headline metrics of a dataset manifest or of a shard manifest."""
    counts = manifest.get("counts")
    metrics: dict[str, float] = {}
    if counts is not None:
        metrics.update(records=counts["total"], rejected=counts["rejected"])
        for split in SPLITS:
            metrics[f"records_{split}"] = counts["split"].get(split, 0)
    else:
        metrics.update(candidates=manifest["candidates"], records=manifest["kept"], rejected=manifest["rejected"])
    for step, t in manifest["tokens"].items():
        metrics[f"tokens_{step}_prompt"] = t["prompt"]
        metrics[f"tokens_{step}_completion"] = t["completion"]
        metrics[f"calls_{step}"] = t["calls"]
    for step, seconds in manifest.get("seconds", {}).items():
        metrics[f"seconds_{step}"] = seconds
    return {k: float(v) for k, v in metrics.items()}


def _run(cfg: BuildConfig, stage: Path, work: Path) -> dict[str, Any]:
    if cfg.shard:  # a shard output: the shard's files are the output
        manifest = _build(cfg, stage, work)
        if storage.is_remote(cfg.output):
            _publish(stage, cfg.output, [SHARD_FILE, SHARD_MANIFEST])
        return manifest
    from thinkflow.data.merge import merge_shards

    # one code path: the unsharded build is shard 0/1 followed by the merge
    shard = _build(cfg, work / "shard", work)
    manifest = merge_shards([work / "shard"], stage, cfg)
    manifest["seconds"] = {**shard["seconds"], **manifest["seconds"]}
    manifest["cpu_seconds"] = shard["cpu_seconds"]
    manifest["calls_this_run"] = shard["calls_this_run"]
    _write_atomic(stage / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    if storage.is_remote(cfg.output):
        _publish(stage, cfg.output, [*(f"{s}.jsonl" for s in SPLITS), "rejected.jsonl", "manifest.json"])
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

    With ``cfg.shard = "I/N"`` only that shard is built and ``output`` receives a shard (``shard.jsonl``,
    ``images/``, ``shard.json``); `thinkflow.data.merge.run` combines the N shards into the dataset, byte for
    byte the one the unsharded build writes.
    """
    stage, work = _stage_dirs(cfg)
    run_id = None
    with _locked(work):
        if cfg.tracking:
            import mlflow

            from thinkflow.tracking import stage_run

            with stage_run("build", cfg.model_dump(mode="json")) as active:
                run_id = active.info.run_id
                manifest = _run(cfg, stage, work)
                mlflow.log_metrics(_metrics(manifest))
                if "content_hash" in manifest:
                    mlflow.set_tag("thinkflow.content_hash", manifest["content_hash"])
                mlflow.log_artifact(str(stage / (SHARD_MANIFEST if cfg.shard else "manifest.json")))
        else:
            manifest = _run(cfg, stage, work)
    if cfg.shard:
        artifacts = {
            "shard": storage.join(cfg.output, SHARD_FILE),
            "manifest": storage.join(cfg.output, SHARD_MANIFEST),
        }
    else:
        artifacts = {
            "manifest": storage.join(cfg.output, "manifest.json"),
            "rejected": storage.join(cfg.output, "rejected.jsonl"),
            **{s: storage.join(cfg.output, f"{s}.jsonl") for s in SPLITS if f"{s}.jsonl" in manifest["files"]},
        }
    return StageResult(
        stage="build", output=cfg.output, metrics=_metrics(manifest), artifacts=artifacts, mlflow_run_id=run_id
    )
