"""Aggregating scored predictions into benchmark metrics (accuracy, DynaMath worst case, WeMath strict score).

A prediction is one row of ``predictions.jsonl`` (a dict with ``benchmark``, ``group``, ``verifier_type``,
``correct``, ``well_formed``, ``length_tokens``, ``aha`` and ``meta``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return float(sum(vals) / len(vals)) if vals else 0.0


def worst_case(preds: list[dict[str, Any]]) -> dict[str, float]:
    """DynaMath's worst-case accuracy: a seed question counts only when every one of its variants is answered correctly.

    The headline score for DynaMath (the paper reports worst case; ``average_case`` is kept too).
    """
    groups: dict[str, list[bool]] = defaultdict(list)
    for p in preds:
        groups[str(p["group"])].append(bool(p["correct"]))
    return {
        "worst_case": _mean(float(all(v)) for v in groups.values()),
        "average_case": _mean(float(p["correct"]) for p in preds),
        "n_groups": float(len(groups)),
    }


_WEMATH_KEY = re.compile(r"([23])steps_(\d|multi)")


def wemath_scores(preds: list[dict[str, Any]]) -> dict[str, float]:
    """WeMath's four-way diagnosis of each composite problem and its strict / loose scores.

    For each problem with an ``Nsteps_multi`` row: IK (a sub-problem wrong, composite wrong), IG (all
    sub-problems right, composite wrong), CM (strict: all right and composite right; loose: any right),
    RM (strict: a sub-problem wrong but composite right; loose: all wrong but composite right).
    Score = (N - 0.5 IG - RM - IK) / N over the N composite problems (525 on the full testmini), as VLMEvalKit
    computes it (vlmeval/dataset/utils/wemath.py ``evaluate_calculate_metrics`` / ``evaluate_update_main_results_df``,
    'Score (Strict)'); the headline score for WeMath (the paper reports the strict score).
    """
    problems: dict[str, dict[str, bool]] = defaultdict(dict)
    for p in preds:
        key = str(p.get("meta", {}).get("key", ""))
        if _WEMATH_KEY.fullmatch(key):
            problems[str(p["group"])][key] = bool(p["correct"])
    counts = dict.fromkeys(("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"), 0)
    n = 0
    for rows in problems.values():
        multi_keys = [k for k in rows if k.endswith("_multi")]
        if not multi_keys:
            continue
        steps = int(multi_keys[0][0])
        subs = [rows.get(f"{steps}steps_{i}", False) for i in range(1, steps + 1)]
        multi = rows[multi_keys[0]]
        n += 1
        if multi:
            counts["CM_strict"] += all(subs)
            counts["CM_loose"] += any(subs)
            counts["RM_strict"] += not all(subs)
            counts["RM_loose"] += not any(subs)
        else:
            counts["IG"] += all(subs)
            counts["IK"] += not all(subs)
    out: dict[str, float] = {f"{k}": float(v) for k, v in counts.items()}
    out["n_problems"] = float(n)
    if n:
        out["strict"] = (n - 0.5 * counts["IG"] - counts["RM_strict"] - counts["IK"]) / n
        out["loose"] = (n - 0.5 * counts["IG"] - counts["RM_loose"] - counts["IK"]) / n
    else:
        out["strict"] = out["loose"] = 0.0
    return out


def aha_summary(preds: list[dict[str, Any]], keywords: Iterable[str]) -> dict[str, float]:
    """Total count per aha keyword, and how many responses have at least one cue."""
    keys = list(keywords)
    totals = dict.fromkeys(keys, 0)
    with_cue = 0
    for p in preds:
        aha = p.get("aha", {})
        for k in keys:
            totals[k] += int(aha.get(k, 0))
        with_cue += any(int(aha.get(k, 0)) for k in keys)
    out: dict[str, float] = {f"count.{k}": float(v) for k, v in totals.items()}
    out["total"] = float(sum(totals.values()))
    out["responses_with_cue"] = float(with_cue)
    out["rate"] = with_cue / len(preds) if preds else 0.0
    return out


def per_verifier(preds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Accuracy, format rate (well-formed share) and mean verifier reward of each verifier type."""
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in preds:
        by_type[str(p["verifier_type"])].append(p)
    return {
        t: {
            "accuracy": _mean(float(p["correct"]) for p in ps),
            "format_rate": _mean(float(p["well_formed"]) for p in ps),
            "mean_reward": _mean(float(p["reward"]) for p in ps),
            "n": float(len(ps)),
        }
        for t, ps in sorted(by_type.items())
    }


def benchmark_metrics(preds: list[dict[str, Any]], score_kind: str, keywords: Iterable[str]) -> dict[str, Any]:
    """Metrics of one benchmark; ``score`` is its headline number (accuracy, worst case or WeMath strict)."""
    out: dict[str, Any] = {
        "n": len(preds),
        "accuracy": _mean(float(p["correct"]) for p in preds),
        "format_rate": _mean(float(p["well_formed"]) for p in preds),
        "answer_tag_rate": _mean(float(p["from_answer_tag"]) for p in preds),
        "mean_length": _mean(float(p["length_tokens"]) for p in preds),
        "mean_reward": _mean(float(p["reward"]) for p in preds),
        "per_verifier": per_verifier(preds),
        "aha": aha_summary(preds, keywords),
        "score_kind": score_kind,
    }
    if score_kind == "worst_case":
        out.update(worst_case(preds))
        out["score"] = out["worst_case"]
    elif score_kind == "wemath_strict":
        out["wemath"] = wemath_scores(preds)
        out["score"] = out["wemath"]["strict"]
    else:
        out["score"] = out["accuracy"]
    return out


def summarize(
    preds: list[dict[str, Any]],
    kinds: dict[str, str],
    keywords: Iterable[str],
    scoring: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The evaluation summary: ``benchmarks``, ``overall``, ``per_verifier`` and ``aha``.

    ``scoring`` names the mode that scored each benchmark (``rules`` or ``judge (MODEL)``; default rules);
    it is kept in each benchmark's metrics as ``scoring``.

    ``overall.mean_score`` is the mean of the benchmarks' headline scores (the paper's average);
    ``overall.accuracy`` is over all samples.
    """
    keys = list(keywords)
    by_bench: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in preds:
        by_bench[str(p["benchmark"])].append(p)
    benchmarks = {b: benchmark_metrics(ps, kinds.get(b, "accuracy"), keys) for b, ps in by_bench.items()}
    for b, m in benchmarks.items():
        m["scoring"] = (scoring or {}).get(b, "rules")
    overall = {
        "mean_score": _mean(m["score"] for m in benchmarks.values()),
        "accuracy": _mean(float(p["correct"]) for p in preds),
        "format_rate": _mean(float(p["well_formed"]) for p in preds),
        "mean_reward": _mean(float(p["reward"]) for p in preds),
        "mean_length": _mean(float(p["length_tokens"]) for p in preds),
        "n": float(len(preds)),
    }
    return {
        "benchmarks": benchmarks,
        "overall": overall,
        "per_verifier": per_verifier(preds),
        "aha": aha_summary(preds, keys),
    }


def flatten_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers of a summary as flat MLflow metric keys (``overall.mean_score``, ``mathvista.score``, ...)."""
    flat: dict[str, float] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, bool | int | float):
            flat[prefix] = float(node)

    walk("overall", summary.get("overall", {}))
    for bench, m in summary.get("benchmarks", {}).items():
        walk(bench, m)
    walk("verifier", summary.get("per_verifier", {}))
    walk("aha", summary.get("aha", {}))
    base = summary.get("base") or {}
    walk("base.overall", base.get("overall", {}))  # the base model on the same samples (the "before")
    walk("base.verifier", base.get("per_verifier", {}))
    return flat
