"""The evaluation report: ``metrics.json``, ``report.md`` and a self-contained ``report.html`` with plots.

Plots (matplotlib, no display needed): per-benchmark scores against a baseline (e.g. the base model or the
current ``@champion``), reward and completion-length curves from the training run's MLflow metrics when one
is given, and the counts of the aha cues (the build's eight split cues; note the paper's Fig. 7 plots four
other keywords' counts, one of them "i should check"). ``report.md`` links the PNG files beside it;
``report.html`` embeds them, so it renders alone as a KFP HTML artifact or an MLflow artifact.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from thinkflow import storage

log = logging.getLogger(__name__)

Curves = dict[str, list[tuple[int, float]]]


# --- inputs ----------------------------------------------------------------------------------


def load_baseline(ref: str) -> tuple[str, dict[str, Any]]:
    """``(label, summary)`` of a baseline: a ``metrics.json`` (file, directory or ``s3://``) or ``models:/NAME@alias``.

    For a registered model version it is the ``eval/metrics.json`` that ``thinkflow register`` logged on the
    version's run (read through MLflow: evaluation does not import the registry package, which imports it).
    """
    uri = ref
    if ref.startswith("models:/"):
        uri = _registered_metrics(ref)
    if not uri.endswith(".json"):
        uri = storage.join(uri, "metrics.json")
    try:
        data = json.loads(storage.read_text(uri))
    except (OSError, ValueError, storage.StorageError) as exc:
        raise ValueError(f"baseline {ref}: cannot read {uri}: {exc}") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"baseline {ref}: {uri} is not an evaluation metrics.json (no 'benchmarks' key)")
    label = ref.removeprefix("models:/") if ref.startswith("models:/") else str(data.get("model") or ref)
    return label, data


def _registered_metrics(ref: str) -> str:
    """Local path of the evaluation ``metrics.json`` logged on the run of ``models:/NAME@alias`` or ``/VERSION``."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name, at, alias = ref.removeprefix("models:/").partition("@")
    try:
        if at:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = name.rpartition("/")
            mv = client.get_model_version(name, version)
        if not mv.run_id:
            raise ValueError(f"baseline {ref}: version {mv.version} has no run, so no logged evaluation")
        return str(download_artifacts(run_id=mv.run_id, artifact_path="eval/metrics.json"))
    except MlflowException as exc:
        raise ValueError(f"baseline {ref}: no evaluation logged with that version ({exc.message})") from None


@dataclass
class ReferenceTable:
    """Published scores to show beside the evaluated model: ``{source, rows: {model: {benchmark: percent}}}``.

    ``source`` must say where the numbers come from (paper, table); scores are percentages as printed.
    """

    source: str
    rows: dict[str, dict[str, float]]


def load_reference(ref: str) -> ReferenceTable:
    """A reference table from a YAML/JSON file (local or ``s3://``); errors name the file and the bad entry."""
    import yaml

    try:
        data = yaml.safe_load(storage.read_text(ref))
    except (OSError, ValueError, storage.StorageError, yaml.YAMLError) as exc:
        raise ValueError(f"reference {ref}: cannot read it: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("source"), str) or not data["source"].strip():
        raise ValueError(f"reference {ref}: expected a mapping with a non-empty 'source' (where the numbers are from)")
    rows = data.get("rows")
    if not isinstance(rows, dict) or not rows:
        raise ValueError(f"reference {ref}: 'rows' must map model names to {{benchmark: score}}")
    out: dict[str, dict[str, float]] = {}
    for model, scores in rows.items():
        if not isinstance(scores, dict):
            raise ValueError(f"reference {ref}: row {model!r} must map benchmarks to scores")
        try:
            out[str(model)] = {str(b): float(v) for b, v in scores.items()}
        except (TypeError, ValueError):
            raise ValueError(f"reference {ref}: row {model!r} has a score that is not a number") from None
    return ReferenceTable(data["source"].strip(), out)


def _reference_table(summary: dict[str, Any], reference: ReferenceTable) -> tuple[str, list[str], list[list[str]]]:
    """The reference rows and this run's row over the same columns (percent; "average" as the reference has it)."""
    columns: list[str] = []
    for scores in reference.rows.values():
        columns += [b for b in scores if b not in columns]
    ours = {b: 100 * float(m["score"]) for b, m in summary["benchmarks"].items()}
    ours["average"] = 100 * float(summary["overall"]["mean_score"])
    rows = [
        [model, *(f"{scores[c]:.1f}" if c in scores else "n/a" for c in columns)]
        for model, scores in reference.rows.items()
    ]
    rows.append(["**this run**", *(f"{ours[c]:.1f}" if c in ours else "n/a" for c in columns)])
    return (f"Reference ({reference.source})", ["model", *columns], rows)


REWARD_KEYS = ("reward",)
LENGTH_KEYS = ("length",)


def training_curves(run_id: str, *, max_keys: int = 8) -> Curves:
    """Reward and completion-length histories of a training run (metric keys containing ``reward``/``length``)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    keys = sorted(
        k for k in run.data.metrics if any(s in k.lower() for s in (*REWARD_KEYS, *LENGTH_KEYS)) and "std" not in k
    )[: max_keys * 2]
    curves: Curves = {}
    for key in keys:
        history = client.get_metric_history(run_id, key)
        points = sorted((int(m.step), float(m.value)) for m in history)
        if points:
            curves[key] = points
    return curves


# --- plots -------------------------------------------------------------------------------------


def plot_benchmarks(
    summary: dict[str, Any], path: Path, baseline: dict[str, Any] | None = None, baseline_label: str = "baseline"
) -> Path:
    """Grouped bars: each benchmark's headline score (and the overall mean), this model vs the baseline."""
    names = [*summary["benchmarks"].keys(), "mean"]
    ours = [summary["benchmarks"][n]["score"] for n in names[:-1]] + [summary["overall"]["mean_score"]]
    theirs: list[float | None] = []
    if baseline:
        for n in names[:-1]:
            b = baseline.get("benchmarks", {}).get(n, {})
            theirs.append(float(b["score"]) if "score" in b else None)
        theirs.append(baseline.get("overall", {}).get("mean_score"))
    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    width = 0.38 if baseline else 0.6
    xs = list(range(len(names)))
    bars = ax.bar(
        [x - (width / 2 if baseline else 0) for x in xs],
        [100 * v for v in ours],
        width,
        label="this model",
        color="#3b6fb6",
    )
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    if baseline:
        vals = [100 * float(v) if v is not None else 0.0 for v in theirs]
        bbars = ax.bar([x + width / 2 for x in xs], vals, width, label=baseline_label, color="#b0b0b0")
        ax.bar_label(
            bbars,
            labels=[f"{v:.1f}" if t is not None else "n/a" for v, t in zip(vals, theirs, strict=True)],
            fontsize=8,
        )
    ax.set_xticks(xs, names, rotation=20, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Benchmark scores")
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def plot_curves(curves: Curves, path: Path) -> Path:
    """Two panels: reward curves and completion-length curves over training steps."""
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    ax_r, ax_l = fig.subplots(1, 2)
    for key, points in curves.items():
        ax = ax_l if any(s in key.lower() for s in LENGTH_KEYS) else ax_r
        ax.plot([p[0] for p in points], [p[1] for p in points], label=key, linewidth=1.2)
    for ax, title in ((ax_r, "Reward"), (ax_l, "Completion length")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path


def plot_aha(
    summary: dict[str, Any], path: Path, baseline: dict[str, Any] | None = None, baseline_label: str = "baseline"
) -> Path:
    """Bars of aha-cue counts per keyword (the configured cues), against the baseline's when it has them."""
    counts = {k.removeprefix("count."): v for k, v in summary["aha"].items() if k.startswith("count.")}
    keys = list(counts)
    fig = Figure(figsize=(max(6.0, 0.9 * len(keys) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    base_counts = {
        k.removeprefix("count."): v for k, v in (baseline or {}).get("aha", {}).items() if k.startswith("count.")
    }
    xs = list(range(len(keys)))
    width = 0.38 if base_counts else 0.6
    bars = ax.bar(
        [x - (width / 2 if base_counts else 0) for x in xs],
        [counts[k] for k in keys],
        width,
        label="this model",
        color="#c9733a",
    )
    ax.bar_label(bars, fmt="%d", fontsize=8)
    if base_counts:
        ax.bar(
            [x + width / 2 for x in xs],
            [base_counts.get(k, 0) for k in keys],
            width,
            label=baseline_label,
            color="#b0b0b0",
        )
        ax.legend(fontsize=8)
    ax.set_xticks(xs, keys, rotation=20, ha="right")
    ax.set_ylabel("occurrences")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    n = int(summary["overall"].get("n", 0))
    ax.set_title(f"Aha cues ({int(summary['aha']['responses_with_cue'])} of {n} responses have one)")
    fig.savefig(path, dpi=110)
    return path


# --- documents ---------------------------------------------------------------------------------


def _pct(v: Any) -> str:
    return f"{100 * float(v):.1f}" if isinstance(v, int | float) else "n/a"


def _tables(
    summary: dict[str, Any], baseline: dict[str, Any] | None, baseline_label: str
) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables as ``(title, header, rows)``, rendered to Markdown and HTML alike."""
    tables = []
    header = ["benchmark", "score", "metric", "scored by", "accuracy", "format", "mean length", "n"]
    if baseline:
        header[2:2] = [baseline_label, "delta"]
    rows = []
    for name, m in summary["benchmarks"].items():
        row = [
            name,
            _pct(m["score"]),
            m["score_kind"],
            str(m.get("scoring", "rules")),
            _pct(m["accuracy"]),
            _pct(m["format_rate"]),
            f"{m['mean_length']:.1f}",
            str(m["n"]),
        ]
        if baseline:
            b = baseline.get("benchmarks", {}).get(name, {}).get("score")
            row[2:2] = [_pct(b), f"{100 * (m['score'] - float(b)):+.1f}" if b is not None else "n/a"]
        rows.append(row)
    o = summary["overall"]
    row = [
        "**mean**",
        _pct(o["mean_score"]),
        "mean of scores",
        "",
        _pct(o["accuracy"]),
        _pct(o["format_rate"]),
        f"{o['mean_length']:.1f}",
        str(int(o["n"])),
    ]
    if baseline:
        b = baseline.get("overall", {}).get("mean_score")
        row[2:2] = [_pct(b), f"{100 * (o['mean_score'] - float(b)):+.1f}" if b is not None else "n/a"]
    rows.append(row)
    tables.append(("Benchmarks (scores in %)", header, rows))
    tables.append(
        (
            "Accuracy per verifier type (%)",
            ["verifier", "accuracy", "n"],
            [[t, _pct(v["accuracy"]), str(int(v["n"]))] for t, v in summary["per_verifier"].items()],
        )
    )
    wemath = [(b, m["wemath"]) for b, m in summary["benchmarks"].items() if "wemath" in m]
    for name, w in wemath:
        tables.append(
            (
                f"{name}: four-dimensional diagnosis",
                ["problems", "strict", "loose", "IK", "IG", "CM (strict)", "RM (strict)"],
                [
                    [
                        str(int(w["n_problems"])),
                        _pct(w["strict"]),
                        _pct(w["loose"]),
                        str(int(w["IK"])),
                        str(int(w["IG"])),
                        str(int(w["CM_strict"])),
                        str(int(w["RM_strict"])),
                    ]
                ],
            )
        )
    aha = summary["aha"]
    tables.append(
        (
            "Aha cues",
            ["keyword", "count"],
            [[k.removeprefix("count."), str(int(v))] for k, v in aha.items() if k.startswith("count.")]
            + [["responses with a cue", f"{int(aha['responses_with_cue'])} ({_pct(aha['rate'])}%)"]],
        )
    )
    return tables


def _markdown(
    title: str,
    facts: list[tuple[str, str]],
    tables: list[tuple[str, list[str], list[list[str]]]],
    images: list[tuple[str, str]],
) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts]
    for caption, src in images:
        lines += ["", f"![{caption}]({src})"]
    for name, header, rows in tables:
        lines += ["", f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html(
    title: str,
    facts: list[tuple[str, str]],
    tables: list[tuple[str, list[str], list[list[str]]]],
    images: list[tuple[str, Path]],
) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;"
        "margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}</style>",
        f"</head><body><h1>{e(title)}</h1><ul>",
        *(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in facts),
        "</ul>",
    ]
    for caption, path in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(
            f"<figure><img alt='{e(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )
    for name, header, rows in tables:
        parts.append(f"<h2>{e(name)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{e(c.replace('**', ''))}</td>" for c in r) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    summary: dict[str, Any],
    out_dir: str | Path,
    *,
    model: str,
    baseline: tuple[str, dict[str, Any]] | None = None,
    curves: Curves | None = None,
    facts: list[tuple[str, str]] | None = None,
    reference: ReferenceTable | None = None,
) -> dict[str, Path]:
    """Write the plots, ``report.md`` and ``report.html`` into ``out_dir``; returns ``{name: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label, base = baseline if baseline else ("baseline", None)
    images: list[tuple[str, Path]] = [
        (
            f"Benchmark scores{' vs ' + label if base else ''}",
            plot_benchmarks(summary, out / "benchmarks.png", base, label),
        ),
    ]
    if curves:
        images.append(("Training reward and completion length", plot_curves(curves, out / "training_curves.png")))
    images.append(("Aha cues per keyword", plot_aha(summary, out / "aha.png", base, label)))
    all_facts = [("model", model), *(facts or [])]
    if base:
        all_facts.append(("baseline", label))
    tables = _tables(summary, base, label)
    if reference is not None:
        tables.insert(1, _reference_table(summary, reference))
    title = "ThinkFlow evaluation report"
    md = out / "report.md"
    md.write_text(_markdown(title, all_facts, tables, [(c, p.name) for c, p in images]), encoding="utf-8")
    page = out / "report.html"
    page.write_text(_html(title, all_facts, tables, images), encoding="utf-8")
    paths = {"report_md": md, "report_html": page}
    paths.update({p.stem: p for _, p in images})
    return paths
