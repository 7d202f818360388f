"""``thinkflow rewards score IN.jsonl -o OUT.jsonl``: the mixed reward over a JSON-lines file.

``score_file`` validates every line first (errors name file and line), then scores in chunks with one
`thinkflow.rewards.mixed.MixedReward` and writes each line plus ``reward`` atomically; ``ScoreSummary`` holds
the per-verifier counts and means it prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinkflow.records import RecordError, iter_jsonl
from thinkflow.rewards.config import RewardConfig
from thinkflow.rewards.mixed import BatchScores, MixedReward, UnknownVerifierError, validate_verifier_type
from thinkflow.rewards.open_ended import Scorer


class RewardInputError(ValueError):
    """A reward input (a JSON line of ``thinkflow rewards score``) that cannot be scored; names file and line."""


@dataclass
class ScoreSummary:
    """Per-verifier counts and means of a scored file."""

    rows: int = 0
    by_type: dict[str, dict[str, float]] = field(default_factory=dict)
    output: str = ""

    def add(self, batch: BatchScores) -> None:
        self.rows += len(batch.rewards)
        for vt, reward, answer in zip(batch.verifier_types, batch.rewards, batch.answers, strict=True):
            entry = self.by_type.setdefault(vt, {"count": 0, "reward_sum": 0.0, "format_failures": 0})
            entry["count"] += 1
            entry["reward_sum"] += reward
            entry["format_failures"] += answer is None

    def to_dict(self) -> dict[str, Any]:
        """``{verifier_type: {count, mean_reward, format_failure_rate}}`` plus ``all``."""
        out: dict[str, Any] = {}
        total = {"count": 0, "reward_sum": 0.0, "format_failures": 0}
        for vt in sorted(self.by_type):
            e = self.by_type[vt]
            out[vt] = {
                "count": int(e["count"]),
                "mean_reward": e["reward_sum"] / e["count"],
                "format_failure_rate": e["format_failures"] / e["count"],
            }
            for k in total:
                total[k] += e[k]
        if total["count"]:
            out["all"] = {
                "count": int(total["count"]),
                "mean_reward": total["reward_sum"] / total["count"],
                "format_failure_rate": total["format_failures"] / total["count"],
            }
        return out

    def table(self) -> Any:
        """A rich table of ``to_dict()``."""
        from rich.table import Table

        table = Table(title=f"rewards: {self.rows} rows → {self.output}")
        for column in ("verifier_type", "count", "mean reward", "format failures"):
            table.add_column(column, justify="left" if column == "verifier_type" else "right")
        for vt, e in self.to_dict().items():
            table.add_row(vt, str(e["count"]), f"{e['mean_reward']:.4f}", f"{100 * e['format_failure_rate']:.1f}%")
        return table


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        yield from iter_jsonl(path)
    except RecordError as exc:
        raise RewardInputError(str(exc)) from None


def _validate_row(path: Path, lineno: int, row: dict[str, Any], reward: MixedReward) -> None:
    where = f"{path}:{lineno}"
    for name in ("completion", "solution", "verifier_type"):
        if name not in row:
            raise RewardInputError(
                f"{where}: missing field {name!r} (each line needs completion, solution, verifier_type)"
            )
    if not isinstance(row["completion"], str | list):
        raise RewardInputError(f"{where}: field 'completion' must be a string or a list of messages")
    try:
        vt = validate_verifier_type(row["verifier_type"], where=where)
    except UnknownVerifierError as exc:
        raise RewardInputError(str(exc)) from None
    if vt == "open":
        if not reward.has_scorer():
            raise RewardInputError(
                f"{where}: verifier_type 'open' needs a reward model; set scorer=http (scorer_url=...) or "
                "scorer=logprob (scorer_model=...) in the reward config"
            )
        if not isinstance(row.get("question"), str):
            raise RewardInputError(f"{where}: verifier_type 'open' needs a 'question' string (and usually 'image')")
    if reward.config.overlong_max_tokens is not None and not isinstance(row.get("completion_length"), int):
        raise RewardInputError(f"{where}: the overlong penalty needs an integer 'completion_length' (tokens)")


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    config: RewardConfig | None = None,
    *,
    scorer: Scorer | None = None,
    progress: bool = True,
    chunk_size: int = 256,
) -> ScoreSummary:
    """Score every line of a JSON-lines file; write each line plus ``reward`` (same order, same count).

    Lines need ``completion``, ``solution``, ``verifier_type``; ``open`` lines also ``question`` (and
    ``image``, relative to the input's directory unless ``config.image_root``); ``iou`` lines may give
    ``image_size`` ``[w, h]``. Every line is validated before anything is scored; errors name file and line.
    The output is written atomically.
    """
    src, dst = Path(input_path), Path(output_path)
    if not src.is_file():
        raise FileNotFoundError(f"input file not found: {src}")
    reward = MixedReward(config, scorer=scorer)
    total = 0
    for lineno, row in _read_rows(src):
        _validate_row(src, lineno, row, reward)
        total += 1
    summary = ScoreSummary(output=str(dst))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    from tqdm import tqdm

    bar = tqdm(total=total, unit="line", desc="scoring", disable=not progress)
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            chunk: list[dict[str, Any]] = []

            def flush() -> None:
                sizes = [r.get("image_size") if isinstance(r.get("image_size"), list) else None for r in chunk]
                result = reward.score_batch(
                    [r["completion"] for r in chunk],
                    [r["solution"] for r in chunk],
                    [r["verifier_type"] for r in chunk],
                    images=[r.get("image") for r in chunk],
                    questions=[r.get("question") or "" for r in chunk],
                    image_sizes=sizes,
                    lengths=[r.get("completion_length") for r in chunk],
                    image_root=src.parent,
                )
                for r, value in zip(chunk, result.rewards, strict=True):
                    out.write(json.dumps({**r, "reward": value if math.isfinite(value) else 0.0}, ensure_ascii=False))
                    out.write("\n")
                summary.add(result)
                bar.update(len(chunk))
                chunk.clear()

            for _, row in _read_rows(src):
                chunk.append(row)
                if len(chunk) >= chunk_size:
                    flush()
            if chunk:
                flush()
        tmp.replace(dst)
    finally:
        bar.close()
        if tmp.exists():
            tmp.unlink()
    return summary
