"""The report's panels (matplotlib, no display needed), one PNG each, or a sentence when there is nothing to show.

A panel whose values are all zero (or absent) is not drawn: `Panel.note` says so in words instead ("no aha
cues in 16 responses"), so the report never shows an empty chart. Legends sit outside the axes; training
curves mark every logged step.

Training curves come from the training run's MLflow metrics, by name: the mixed reward's
``mixed_reward/<verifier>/accuracy`` and ``mixed_reward/format_failure`` (`thinkflow.rewards.mixed`
``BatchScores.means``), TRL's ``reward`` and ``rewards/<func>/mean``, and ``completions/mean_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Curves = dict[str, list[tuple[int, float]]]
THIS = "#3b6fb6"
OTHER = "#b0b0b0"


@dataclass
class Panel:
    """One panel of the report: a title and its PNG, or (``image`` None) a note saying why there is no chart."""

    title: str
    image: Path | None = None
    note: str = ""


# --- training curves ---------------------------------------------------------------------------

# panel -> (title, y label); the order the report shows them in
TRAINING_PANELS: dict[str, tuple[str, str]] = {
    "accuracy": ("Training: accuracy per verifier", "accuracy"),
    "format_failure": ("Training: format failure", "share of completions without <answer>"),
    "reward": ("Training: mean reward", "reward"),
    "length": ("Training: completion length", "tokens"),
}


def curve_panel(key: str) -> str | None:
    """Which training panel a logged metric belongs to (None: not plotted)."""
    k = key.lower()
    if "std" in k or k.endswith(("/min", "/max")):
        return None
    if k.endswith("/accuracy"):
        return "accuracy"
    if "format_failure" in k:
        return "format_failure"
    if k == "reward" or (k.startswith("rewards/") and k.endswith("/mean")):
        return "reward"
    if "mean_length" in k:
        return "length"
    return None


def _label(key: str, panel: str) -> str:
    if panel == "accuracy":  # mixed_reward/math/accuracy -> math
        parts = key.split("/")
        return parts[-2] if len(parts) >= 2 else key
    return key


def _legend_outside(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, frameon=False)


def _all_zero(values: Sequence[float | None]) -> bool:
    return all(not v for v in values)


def training_panels(curves: Curves, out: Path) -> list[Panel]:
    """The four training panels (accuracy per verifier, format failure, mean reward, completion length)."""
    grouped: dict[str, Curves] = {name: {} for name in TRAINING_PANELS}
    for key, points in sorted(curves.items()):
        panel = curve_panel(key)
        if panel is not None and points:
            grouped[panel][key] = points
    panels = []
    for name, (title, ylabel) in TRAINING_PANELS.items():
        series = grouped[name]
        steps = sorted({s for points in series.values() for s, _ in points})
        if not series:
            panels.append(Panel(title, note="the training run logged no such metric"))
            continue
        if _all_zero([v for points in series.values() for _, v in points]):
            what = ", ".join(_label(k, name) for k in series)
            note = (
                f"no format failures at any of the {len(steps)} logged steps"
                if name == "format_failure"
                else f"0 at every one of the {len(steps)} logged steps ({what})"
            )
            panels.append(Panel(title, note=note))
            continue
        fig = Figure(figsize=(7.5, 3.2), layout="constrained")
        ax = fig.subplots()
        for key, points in series.items():  # every logged step, marked
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                markersize=3,
                linewidth=1.2,
                label=_label(key, name),
            )
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend_outside(ax)
        path = out / f"training_{name}.png"
        fig.savefig(path, dpi=110)
        panels.append(Panel(title, path))
    return panels


# --- evaluation ----------------------------------------------------------------------------------


def bars(
    path: Path,
    title: str,
    names: list[str],
    ours: list[float],
    other: list[float | None] | None,
    other_label: str,
    *,
    ylabel: str,
    percent: bool = True,
    fmt: str = "",
) -> Path:
    """Grouped bars: this model and (when given) a comparison; ``None`` in ``other`` is shown as n/a."""
    scale = 100.0 if percent else 1.0
    fig = Figure(figsize=(max(6.0, 1.0 * len(names) + 3), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.38 if other else 0.6
    xs = list(range(len(names)))
    fmt = fmt or ("%.1f" if percent else "%.2f")
    mine = ax.bar(
        [x - (width / 2 if other else 0) for x in xs], [scale * v for v in ours], width, label="this model", color=THIS
    )
    ax.bar_label(mine, fmt=fmt, fontsize=8)
    if other:
        vals = [scale * float(v) if v is not None else 0.0 for v in other]
        theirs = ax.bar([x + width / 2 for x in xs], vals, width, label=other_label, color=OTHER)
        labels = [(fmt % v) if o is not None else "n/a" for v, o in zip(vals, other, strict=True)]
        ax.bar_label(theirs, labels=labels, fontsize=8)
    ax.set_xticks(xs, names, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylabel(ylabel)
    if percent:
        ax.set_ylim(0, 108)
    ax.set_title(title)
    _legend_outside(ax)
    fig.savefig(path, dpi=110)
    return path


def bar_panel(
    out: Path,
    name: str,
    title: str,
    rows: dict[str, tuple[float, float | None]],
    other_label: str,
    *,
    ylabel: str,
    empty: str,
    zero: str,
    percent: bool = True,
    fmt: str = "",
) -> Panel:
    """A `bars` panel over ``{name: (ours, other)}``, or the ``empty`` / ``zero`` sentence instead of a chart."""
    if not rows:
        return Panel(title, note=empty)
    names = list(rows)
    ours = [rows[n][0] for n in names]
    other = [rows[n][1] for n in names]
    if _all_zero(ours) and _all_zero(other):
        return Panel(title, note=zero)
    compare = other if any(v is not None for v in other) else None
    return Panel(
        title,
        bars(out / f"{name}.png", title, names, ours, compare, other_label, ylabel=ylabel, percent=percent, fmt=fmt),
    )


def evaluation_panels(
    summary: dict[str, Any], out: Path, baseline: dict[str, Any] | None, baseline_label: str
) -> list[Panel]:
    """Benchmark scores, then accuracy, format failure and mean reward per verifier type, then the aha cues.

    Per verifier the comparison is the base model on the same samples (``summary["base"]``, the "before")
    when the evaluation has one, else the baseline."""
    n = int(summary["overall"].get("n", 0))
    panels = []
    scores = {
        b: (float(m["score"]), _get(baseline, "benchmarks", b, "score")) for b, m in summary["benchmarks"].items()
    }
    scores["mean"] = (float(summary["overall"]["mean_score"]), _get(baseline, "overall", "mean_score"))
    panels.append(
        bar_panel(
            out,
            "benchmarks",
            "Benchmark scores",
            scores,
            baseline_label,
            ylabel="score (%)",
            empty="no benchmark was evaluated",
            zero=f"every benchmark scored 0 ({n} samples)",
        )
    )
    before = summary.get("base")
    other, other_label = (before, "before (base model)") if isinstance(before, dict) else (baseline, baseline_label)
    verifiers = summary.get("per_verifier", {})

    def per_verifier(key: str, flip: bool = False) -> dict[str, tuple[float, float | None]]:
        rows: dict[str, tuple[float, float | None]] = {}
        for vt, m in verifiers.items():
            if key not in m:
                continue
            theirs = _get(other, "per_verifier", vt, key)
            rows[vt] = (1 - float(m[key]), None if theirs is None else 1 - theirs) if flip else (float(m[key]), theirs)
        return rows

    panels.append(
        bar_panel(
            out,
            "verifier_accuracy",
            "Accuracy per verifier type",
            per_verifier("accuracy"),
            other_label,
            ylabel="accuracy (%)",
            empty="no verifier types",
            zero=f"no correct answer of any verifier type ({n} samples)",
        )
    )
    panels.append(
        bar_panel(
            out,
            "verifier_format_failure",
            "Format failure per verifier type",
            per_verifier("format_rate", flip=True),
            other_label,
            ylabel="not well-formed (%)",
            empty="format rate per verifier type not recorded",
            zero=f"no format failures: all {n} responses are well-formed",
        )
    )
    panels.append(
        bar_panel(
            out,
            "verifier_reward",
            "Mean reward per verifier type",
            per_verifier("mean_reward"),
            other_label,
            ylabel="mean verifier reward",
            percent=False,
            empty="mean reward per verifier type not recorded",
            zero=f"the mean reward is 0 for every verifier type ({n} samples)",
        )
    )
    cues = {k.removeprefix("count."): v for k, v in summary["aha"].items() if k.startswith("count.")}
    aha_rows = {c: (float(v), _get(baseline, "aha", f"count.{c}")) for c, v in cues.items()}
    with_cue = int(summary["aha"].get("responses_with_cue", 0))
    panels.append(
        bar_panel(
            out,
            "aha",
            f"Aha cues ({with_cue} of {n} responses have one)",
            aha_rows,
            baseline_label,
            ylabel="occurrences",
            percent=False,
            fmt="%d",
            empty="no aha cues configured",
            zero=f"no aha cues in {n} responses",
        )
    )
    return panels


def _get(node: Any, *keys: str) -> float | None:
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None
