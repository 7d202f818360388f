"""Step 6: split records into ``sft`` / ``rl`` / ``eval`` (no overlap).

* ``eval``: ``eval_fraction`` of the auto-split records held out by seed, per verifier type (the records with
  the smallest ``sha256(seed:id)``, so the choice is stable however the build was interrupted);
* ``rl``: the reasoning contains one of the paper's aha cues (``wait``, ``again``, ``double-check``, ``hmm``,
  ``mistake``, ``alternatively``, ``check``, ``i should confirm``; whole words, case-insensitive), or the
  record has no response at all (RL needs none);
* ``sft``: every other record with a response.

Records whose source fixes a split (the VLAA SFT/GRPO files, the synthetic set, ``split:`` in a source)
keep it.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from thinkflow.records import AHA_CUES


@lru_cache(maxsize=32)
def _cue_regex(cues: tuple[str, ...]) -> re.Pattern[str]:
    parts = [r"\s+".join(re.escape(w) for w in cue.split()) for cue in cues if cue.strip()]
    return re.compile(r"(?<![\w-])(?:" + "|".join(parts) + r")(?![\w-])", re.IGNORECASE)


def has_aha(reasoning: str, cues: Sequence[str] = AHA_CUES) -> bool:
    """True when ``reasoning`` contains one of ``cues`` as a whole word/phrase (case-insensitive)."""
    if not reasoning or not cues:
        return False
    return _cue_regex(tuple(cues)).search(reasoning) is not None


def _rank(seed: int, rid: str) -> str:
    return hashlib.sha256(f"{seed}:{rid}".encode()).hexdigest()


def stratified_eval(records: Sequence[dict[str, Any]], fraction: float, seed: int) -> set[str]:
    """Ids held out for eval: ``round(fraction * n)`` per verifier type, chosen by seed."""
    if fraction <= 0:
        return set()
    groups: dict[str, list[str]] = defaultdict(list)
    for rec in records:
        groups[rec["verifier_type"]].append(rec["id"])
    out: set[str] = set()
    for ids in groups.values():
        k = round(fraction * len(ids))
        out.update(sorted(ids, key=lambda rid: _rank(seed, rid))[:k])
    return out


def assign_split(record: dict[str, Any], mode: str, held_out: bool, cues: Sequence[str] = AHA_CUES) -> str:
    """The split of one record. ``mode``: ``sft``/``rl``/``eval`` (forced), ``keep`` (its own, else auto), ``auto``."""
    if mode in ("sft", "rl", "eval"):
        return mode
    if mode == "keep" and record.get("split") in ("sft", "rl", "eval"):
        return str(record["split"])
    if held_out:
        return "eval"
    response = record.get("response")
    if not response:
        return "rl"
    from thinkflow.data.text import response_parts

    reasoning, _ = response_parts(response)
    return "rl" if has_aha(reasoning, cues) else "sft"
