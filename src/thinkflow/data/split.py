"""Step 6: split records into ``sft`` / ``rl`` / ``eval`` (no overlap).

* ``eval``: ``eval_fraction`` of the auto-split records held out by seed, per verifier type (the records with
  the smallest ``sha256(seed:id)``, so the choice is stable however the build was interrupted);
* ``rl``: the record's whole response contains one of the paper's eight aha cues (`thinkflow.format.AHA_CUES`;
  by default the paper's rule, a case-insensitive substring test ``any(cue in text.lower())``; ``aha_match:
  word`` matches whole words only), or the record has no response at all (RL needs none);
* ``sft``: every other record with a response.

Records whose source fixes a split (the VLAA SFT/GRPO files, the synthetic set, ``split:`` in a source)
keep it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from thinkflow.format import AHA_CUES, AhaMatch, has_aha


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


def assign_split(
    record: dict[str, Any],
    mode: str,
    held_out: bool,
    cues: Sequence[str] = AHA_CUES,
    aha_match: AhaMatch = "substring",
) -> str:
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
    return "rl" if has_aha(str(response), cues, aha_match) else "sft"
