"""The SFT-or-RL study's comparison: one paper-style table from several evaluations (an evaluation stage).

`compare(cfg: CompareConfig)` reads the ``metrics.json`` of each evaluation (an evaluate output directory, local or
``s3://``), and writes ``comparison.md`` (rows: recipes; columns: the per-benchmark headline scores, their
average, format compliance and response length; best value per column in bold; a delta column against a
baseline recipe) and ``comparison.json`` (the same numbers). It logs them to MLflow as the
``compare_study`` stage run, nested under the pipeline's parent run. The ``compare_study`` component calls it;
the ``sft_vs_rl_study`` pipeline fans out over `thinkflow.train.recipes.RECIPES`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from thinkflow import storage
from thinkflow.config import StageConfig, StageResult
from thinkflow.errors import ThinkFlowError

RECIPE_TITLES = {"grpo": "GRPO", "sft": "SFT", "sft_grpo": "SFT → GRPO"}
# Columns that are fractions (shown x100 like the paper's tables) unless percent=False.
_NOT_FRACTIONS = ("mean_length", "length", ".n", "aha.")


class Evaluation(BaseModel):
    """One row: a label (the recipe) and an evaluate output directory."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, description="Row label: the recipe (grpo, sft, sft_grpo) or any name.")
    results: str = Field(min_length=1, description="An evaluate output directory (local or s3://) with metrics.json.")


class CompareConfig(StageConfig):
    """What to compare and where the table goes."""

    evaluations: list[Evaluation] = Field(min_length=1, description="The evaluations to compare, one row each.")
    output_dir: str = Field(min_length=1, description="Where comparison.md and comparison.json go (dir or s3://).")
    baseline: str | None = Field(
        default=None, description='Label of the row the others are compared against (a "Δ" column on the average).'
    )
    columns: list[str] | None = Field(
        default=None,
        description='Dotted metric keys of metrics.json to tabulate (e.g. "benchmarks.mathvista.score"); null: the '
        "per-benchmark headline scores, then overall.mean_score, overall.format_rate, overall.mean_length.",
    )
    percent: bool = Field(default=True, description="Show fractions as percentages (as the paper's tables).")
    same_eval_set: bool = Field(
        default=True, description="Refuse to compare evaluations of different eval sets (eval_set_hash differs)."
    )
    title: str = Field(
        default="SFT or RL? Recipes compared on the same evaluation set", description="Heading of the table."
    )

    @model_validator(mode="after")
    def _check(self) -> CompareConfig:
        labels = [e.label for e in self.evaluations]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"duplicate evaluation labels: {', '.join(dupes)}")
        if self.baseline is not None and self.baseline not in labels:
            raise ValueError(f"baseline {self.baseline!r} is not one of the labels ({', '.join(labels)})")
        return self


class CompareError(ThinkFlowError, ValueError):
    """An evaluation that cannot be compared; the message names the label and the file."""


def flatten(node: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as dotted keys (booleans and text skipped)."""
    out: dict[str, float] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(node, int | float) and not isinstance(node, bool) and math.isfinite(node):
        out[prefix] = float(node)
    return out


def read_metrics(ev: Evaluation) -> dict[str, Any]:
    """The ``metrics.json`` of one evaluation."""
    uri = storage.join(ev.results, "metrics.json")
    if not storage.exists(uri):
        raise CompareError(f"evaluation {ev.label!r}: no metrics.json in {ev.results}")
    try:
        data = json.loads(storage.read_text(uri))
    except json.JSONDecodeError as exc:
        raise CompareError(f"evaluation {ev.label!r}: {uri} is not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise CompareError(f"evaluation {ev.label!r}: {uri} must hold a JSON object")
    return data


def default_columns(all_metrics: list[dict[str, Any]]) -> list[str]:
    """Per-benchmark headline scores (in order of appearance), then the average, format rate and length."""
    columns: list[str] = []
    for data in all_metrics:
        for bench in data.get("benchmarks") or {}:
            key = f"benchmarks.{bench}.score"
            if key not in columns:
                columns.append(key)
    if columns:
        return [*columns, "overall.mean_score", "overall.format_rate", "overall.mean_length"]
    # Not an evaluate summary: every numeric key, in order of appearance.
    for data in all_metrics:
        for key in flatten(data):
            if key not in columns:
                columns.append(key)
    return columns


def column_title(key: str) -> str:
    """Table header of a metric key: the benchmark name, ``Avg``, ``Format``, ``Length``, else the key."""
    titles = {"overall.mean_score": "Avg", "overall.format_rate": "Format", "overall.mean_length": "Length"}
    if key in titles:
        return titles[key]
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "benchmarks" and parts[2] == "score":
        return parts[1]
    return key


def _is_fraction(key: str) -> bool:
    return not any(marker in key for marker in _NOT_FRACTIONS)


def _fmt(value: float | None, key: str, percent: bool) -> str:
    if value is None:
        return "–"
    if percent and _is_fraction(key):
        return f"{100 * value:.1f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def table(
    rows: dict[str, dict[str, float]], columns: list[str], *, baseline: str | None, percent: bool, title: str
) -> str:
    """The Markdown comparison table (best per column in bold; higher is better except for length)."""
    header = ["Recipe", *[column_title(c) for c in columns]]
    avg_key = "overall.mean_score" if "overall.mean_score" in columns else (columns[0] if columns else None)
    if baseline is not None and avg_key is not None:
        header.append(f"Δ {column_title(avg_key)} vs {RECIPE_TITLES.get(baseline, baseline)}")
    best: dict[str, float] = {}
    for col in columns:
        present = [r[col] for r in rows.values() if col in r]
        if len(set(present)) > 1 and "length" not in col:  # nothing to single out when all are equal
            best[col] = max(present)
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, values in rows.items():
        cells = [RECIPE_TITLES.get(label, label)]
        for col in columns:
            text = _fmt(values.get(col), col, percent)
            if col in best and values.get(col) == best[col]:
                text = f"**{text}**"
            cells.append(text)
        if baseline is not None and avg_key is not None:
            mine, base = values.get(avg_key), rows[baseline].get(avg_key)
            if label == baseline or mine is None or base is None:
                cells.append("–")
            else:
                scale = 100 if percent and _is_fraction(avg_key) else 1
                cells.append(f"{scale * (mine - base):+.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    unit = "Scores are percentages" if percent else "Scores are fractions"
    lines += ["", f"{unit}; Length is the mean response length in tokens. Best value per column in bold.", ""]
    return "\n".join(lines)


def compare(cfg: CompareConfig) -> StageResult:
    """Write the comparison table (Markdown + JSON) and log it; metrics are ``<label>.<column>``."""
    from thinkflow.tracking import stage_run

    all_metrics = [read_metrics(ev) for ev in cfg.evaluations]
    hashes = {ev.label: d.get("eval_set_hash") for ev, d in zip(cfg.evaluations, all_metrics, strict=True)}
    if cfg.same_eval_set and len({h for h in hashes.values() if h}) > 1:
        listed = ", ".join(f"{label}={str(h)[:12]}" for label, h in hashes.items())
        raise CompareError(
            f"evaluations were run on different eval sets ({listed}); set same_eval_set=false to compare anyway"
        )
    columns = cfg.columns or default_columns(all_metrics)
    rows: dict[str, dict[str, float]] = {}
    for ev, data in zip(cfg.evaluations, all_metrics, strict=True):
        flat = flatten(data)
        rows[ev.label] = {c: flat[c] for c in columns if c in flat}
    missing = [c for c in columns if not any(c in r for r in rows.values())]
    if cfg.columns and missing:
        raise CompareError(f"columns not found in any metrics.json: {', '.join(missing)}")
    markdown = table(rows, columns, baseline=cfg.baseline, percent=cfg.percent, title=cfg.title)
    metrics = {f"{label}.{col}": value for label, values in rows.items() for col, value in values.items()}
    payload = {"columns": columns, "rows": rows, "baseline": cfg.baseline, "eval_set_hash": hashes}
    with stage_run("compare_study", cfg.model_dump(mode="json")) as run:
        import mlflow

        out = cfg.output_dir
        local = Path(out) if not storage.is_remote(out) else Path(storage.cache_dir(), "compare", run.info.run_id)
        local.mkdir(parents=True, exist_ok=True)
        (local / "comparison.md").write_text(markdown, encoding="utf-8")
        (local / "comparison.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        if storage.is_remote(out):
            storage.upload(local, out)
        mlflow.log_metrics({k.replace("/", "_"): v for k, v in metrics.items()})
        mlflow.log_artifacts(str(local), artifact_path="comparison")
        run_id = run.info.run_id
    return StageResult(
        stage="compare_study",
        output=out,
        metrics=metrics,
        artifacts={"table": storage.join(out, "comparison.md"), "json": storage.join(out, "comparison.json")},
        mlflow_run_id=run_id,
    )
