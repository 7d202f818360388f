"""Steps 2-5 of the build, the teacher steps: **caption**, **reason**, **rewrite**, **verify**.

Only records that collect marked for distillation (no response yet) go through them. Each step runs its
teacher calls concurrently (``concurrency`` per teacher, ``ramp_up``), journals every finished record
(``2-caption.jsonl`` … ``5-verify.jsonl``) before the next step, and on a restart skips what its journal holds.
Teacher failures that may be transient are not journaled: the step finishes the other records, then the build
fails and the next run retries just those (``on_teacher_error: fail``), or the record is rejected (``reject``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from thinkflow.data.build_config import BuildError
from thinkflow.data.teachers import Teacher, TeacherError, image_part
from thinkflow.data.text import normalize_response, word_count
from thinkflow.data.workdir import BuildState
from thinkflow.format import format_response, response_parts, split_think
from thinkflow.rewards import score as rule_score


@dataclass
class Item:
    """A record going through steps 2-5."""

    id: str
    record: dict[str, Any]
    extras: str | None
    text_question: str | None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


class Distiller:
    """Runs steps 2-5 for one shard's build (`BuildState`)."""

    def __init__(self, state: BuildState) -> None:
        self.state = state
        self.cfg = state.cfg
        self.prompts = state.prompts

    async def run_step(
        self,
        step: str,
        items: list[Item],
        fn: Callable[[Item], Awaitable[dict[str, Any]]],
        teacher: Teacher | None,
    ) -> list[Item]:
        concurrency, ramp_up = (teacher.cfg.concurrency, teacher.cfg.ramp_up) if teacher else (8, 0.0)
        journal = self.state.journal(step)
        pending = [it for it in items if it.id not in journal]
        if pending and teacher is not None:
            problem = await teacher.reachable()
            if problem:  # fail fast instead of retrying every record against a server that is not there
                raise BuildError(f"step {step}: {problem} — is the server running?")
        bar = self.state.bar(step, len(items), len(items) - len(pending))
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
                    self.state.calls_this_run[step] += 1
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
            self.state.seconds[step] = time.monotonic() - start
            self.state.cpu_seconds[step] = time.process_time() - cpu
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

    async def run(self, entries: list[dict[str, Any]]) -> list[Item]:
        """Steps 2-5 over the collect entries marked for distillation; the records that pass all four."""
        cfg = self.cfg
        items = [
            Item(e["record"]["id"], e["record"], e.get("extras"), e.get("text_question"))
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
            items = await self.run_step("caption", items, lambda it: self.caption(caption, it), caption)
            items = await self.run_step("reason", items, lambda it: self.reason(reason, it), reason)
            items = await self.run_step("rewrite", items, lambda it: self.rewrite(rewrite, it), rewrite)
            items = await self.run_step("verify", items, lambda it: self.verify(judge, it), judge)
        finally:
            for teacher in teachers.values():
                await teacher.aclose()
        return items

    async def caption(self, teacher: Teacher | None, item: Item) -> dict[str, Any]:
        if item.record.get("caption") or item.text_question:
            return {"status": "skipped", "reason": "has a caption" if item.record.get("caption") else "text question"}
        assert teacher is not None
        image = self.state.stage / item.record["image"]
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

    async def reason(self, teacher: Teacher, item: Item) -> dict[str, Any]:
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

    def _response(self, item: Item) -> str:
        for step in ("rewrite", "reason"):
            out = item.outputs.get(step, {}).get("out", {})
            if out.get("response"):
                return str(out["response"])
        raise BuildError(f"record {item.id}: no response after step reason")

    async def rewrite(self, teacher: Teacher | None, item: Item) -> dict[str, Any]:
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

    async def verify(self, teacher: Teacher | None, item: Item) -> dict[str, Any]:
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


def _verdict(text: str) -> bool | None:
    _, rest = split_think(text)
    m = re.search(r"\b(yes|no)\b", rest or text, re.IGNORECASE)
    return None if m is None else m.group(1).lower() == "yes"


def _rule_score(response: str, solution: str, vtype: str, meta: dict[str, Any]) -> float:
    """Score with the rule-based verifier of ``thinkflow.rewards``."""
    ctx: dict[str, Any] = {}
    if vtype == "iou" and meta.get("image_size"):
        ctx["image_size"] = tuple(meta["image_size"])
    return float(rule_score(response, solution, vtype, **ctx))
