"""The evaluation report: ``report.md`` and a self-contained ``report.html`` with its panels and examples.

Panels (`thinkflow.evaluate.plots`, one PNG each): benchmark scores against a baseline (e.g. the current
``@champion``); accuracy, format failure and mean reward per verifier type against the base model's on the
same samples (the "before") or the baseline; the aha-cue counts (the build's eight split cues; note the paper's
Fig. 7 plots four other keywords' counts, one of them "i should check"); and, when the training run is known,
its accuracy per verifier, format failure, mean reward and completion length at every logged step. A panel
with nothing but zeros is a sentence instead. Then a handful of example predictions: question, image
thumbnail, completion and verdict. ``report.md`` links the PNG files beside it (so a copy of the folder
renders anywhere); ``report.html`` embeds them, so it renders alone as a KFP HTML artifact or an MLflow
artifact. Everything the report names outside its folder is an absolute path or a URI.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from thinkflow import storage
from thinkflow.evaluate.plots import Curves, Panel, curve_panel, evaluation_panels, training_panels

log = logging.getLogger(__name__)

EXAMPLES_DIR = "examples"  # thumbnails of the example predictions, beside the report
THUMBNAIL_PX = 192
MAX_QUESTION_CHARS = 600
MAX_COMPLETION_CHARS = 1200


# --- inputs ----------------------------------------------------------------------------------


def load_baseline(ref: str) -> tuple[str, dict[str, Any]]:
    """``(label, summary)`` of a baseline: a ``metrics.json`` (file, directory or ``s3://``) or a registered
    version ``models:/NAME@alias`` / ``models:/NAME/VERSION``, whose evaluation is the ``eval/metrics.json``
    its registration run logged (read through MLflow, not the registry package, which imports evaluate)."""
    if ref.startswith("models:/"):
        return ref.removeprefix("models:/"), _registered_metrics(ref)
    uri = ref
    if not uri.endswith(".json"):
        uri = storage.join(uri, "metrics.json")
    try:
        data = json.loads(storage.read_text(uri))
    except (OSError, ValueError, storage.StorageError) as exc:
        raise ValueError(f"baseline {ref}: cannot read {uri}: {exc}") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"baseline {ref}: {uri} is not an evaluation metrics.json (no 'benchmarks' key)")
    label = str(data.get("model") or ref)
    return label, data


def _registered_metrics(ref: str) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    name, sep, alias = ref.removeprefix("models:/").partition("@")
    try:
        if sep:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, _, version = name.rpartition("/")
            mv = client.get_model_version(name, version)
        if not mv.run_id:
            raise ValueError(f"baseline {ref}: version {mv.version} has no registration run")
        path = download_artifacts(run_id=mv.run_id, artifact_path="eval/metrics.json")
    except (MlflowException, OSError) as exc:
        raise ValueError(f"baseline {ref}: no evaluation logged with that version ({exc})") from None
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "overall" not in data:
        raise ValueError(f"baseline {ref}: the version's eval/metrics.json is not an evaluation summary")
    return data


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


def training_curves(run_id: str) -> Curves:
    """Every logged step of the training run's metrics that the report plots (`plots.curve_panel`)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    curves: Curves = {}
    for key in sorted(k for k in run.data.metrics if curve_panel(k)):
        points = sorted((int(m.step), float(m.value)) for m in client.get_metric_history(run_id, key))
        if points:
            curves[key] = points
    return curves


def run_location(run_id: str) -> str:
    """Where a person finds an MLflow run: its UI address on a tracking server, else ``runs:/ID`` and the store."""
    import mlflow

    tracking = mlflow.get_tracking_uri()
    if tracking.startswith(("http://", "https://")):
        experiment = mlflow.MlflowClient().get_run(run_id).info.experiment_id
        return f"{tracking.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    for prefix in ("sqlite:///", "file://"):
        if tracking.startswith(prefix) and not tracking.startswith(prefix + "/"):
            tracking = prefix + str(Path(tracking.removeprefix(prefix)).resolve())
    if "://" not in tracking:
        tracking = str(Path(tracking).resolve())
    return f"runs:/{run_id} in {tracking}"


@dataclass
class Example:
    """One example prediction as the report shows it."""

    benchmark: str
    id: str
    question: str
    completion: str
    verdict: str
    image: Image.Image

    @classmethod
    def of(cls, p: dict[str, Any], image: Image.Image) -> Example:
        """From a ``predictions.jsonl`` row and the sample's image."""
        answer = p.get("answer")
        got = f"answer {answer!r}" if answer is not None else "no answer found"
        form = "well-formed" if p.get("well_formed") else "not well-formed"
        verdict = (
            f"{'correct' if p['correct'] else 'wrong'}: {got}, solution {p['solution']!r} "
            f"({p['verifier_type']} verifier, reward {float(p['reward']):.2f}, {form})"
        )
        text = str(p["completion"])
        shown = text if text.strip() else f"(nothing but whitespace: {len(text)} characters)"
        return cls(str(p["benchmark"]), str(p["id"]), str(p["question"]), shown, verdict, image)


def thumbnail_name(benchmark: str, sample_id: str) -> str:
    """The file of a sample's thumbnail under ``examples/`` (stable, so a merge finds the parts' thumbnails)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", benchmark)[:40]
    return f"{safe}-{hashlib.sha256(sample_id.encode()).hexdigest()[:12]}.png"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


# --- documents ---------------------------------------------------------------------------------


def _pct(v: Any) -> str:
    return f"{100 * float(v):.1f}" if isinstance(v, int | float) else "n/a"


def _num(v: Any) -> str:
    return f"{float(v):.3f}" if isinstance(v, int | float) else "n/a"


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
            "Per verifier type",
            ["verifier", "accuracy (%)", "format (%)", "mean reward", "n"],
            [
                [t, _pct(v["accuracy"]), _pct(v.get("format_rate")), _num(v.get("mean_reward")), str(int(v["n"]))]
                for t, v in summary["per_verifier"].items()
            ],
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


def _fence(text: str) -> str:
    """A Markdown code fence longer than any backtick run in ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _markdown(
    title: str,
    facts: list[tuple[str, str]],
    tables: list[tuple[str, list[str], list[list[str]]]],
    panels: list[Panel],
    examples: list[tuple[Example, str]],
) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts]
    for panel in panels:
        lines += ["", f"![{panel.title}]({panel.image.name})" if panel.image else f"**{panel.title}**: {panel.note}."]
    for name, header, rows in tables:
        lines += ["", f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    if examples:
        lines += ["", "## Example predictions"]
    for i, (ex, thumb) in enumerate(examples, 1):
        completion = _clip(ex.completion, MAX_COMPLETION_CHARS)
        fence = _fence(completion)
        lines += [
            "",
            f"### {i}. {ex.benchmark} / {ex.id}",
            "",
            f"![image of {ex.benchmark} / {ex.id}]({thumb})",
            "",
            "**Question**: " + " ".join(_clip(ex.question, MAX_QUESTION_CHARS).split()),
            "",
            "**Completion**:",
            "",
            f"{fence}text",
            completion,
            fence,
            "",
            f"**Verdict**: {ex.verdict}",
        ]
    return "\n".join(lines) + "\n"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _html(
    title: str,
    facts: list[tuple[str, str]],
    tables: list[tuple[str, list[str], list[list[str]]]],
    panels: list[Panel],
    examples: list[tuple[Example, Path]],
) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;"
        "margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}"
        ".example{display:flex;gap:16px;margin:12px 0;border-top:1px solid #ddd;padding-top:12px}"
        ".example img{max-width:192px;align-self:flex-start}pre{white-space:pre-wrap;background:#f7f7f7;"
        "padding:8px}</style>",
        f"</head><body><h1>{e(title)}</h1><ul>",
        *(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in facts),
        "</ul>",
    ]
    for panel in panels:
        if panel.image:
            parts.append(f"<figure>{_img(panel.image, panel.title)}<figcaption>{e(panel.title)}</figcaption></figure>")
        else:
            parts.append(f"<p class='note'><b>{e(panel.title)}</b>: {e(panel.note)}.</p>")
    for name, header, rows in tables:
        parts.append(f"<h2>{e(name)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{e(c.replace('**', ''))}</td>" for c in r) + "</tr>")
        parts.append("</table>")
    if examples:
        parts.append("<h2>Example predictions</h2>")
    for i, (ex, thumb) in enumerate(examples, 1):
        parts.append(
            f"<div class='example'>{_img(thumb, f'image of {ex.benchmark} / {ex.id}')}<div>"
            f"<h3>{i}. {e(ex.benchmark)} / {e(ex.id)}</h3>"
            f"<p><b>Question</b>: {e(_clip(ex.question, MAX_QUESTION_CHARS))}</p>"
            f"<p><b>Completion</b>:</p><pre>{e(_clip(ex.completion, MAX_COMPLETION_CHARS))}</pre>"
            f"<p><b>Verdict</b>: {e(ex.verdict)}</p></div></div>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def save_thumbnail(image: Image.Image, out: Path, benchmark: str, sample_id: str) -> Path:
    """A sample's image, at most `THUMBNAIL_PX` on a side, as ``out/examples/<thumbnail_name>``."""
    folder = out / EXAMPLES_DIR
    folder.mkdir(exist_ok=True)
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    path = folder / thumbnail_name(benchmark, sample_id)
    small.save(path, format="PNG")
    return path


def write_report(
    summary: dict[str, Any],
    out_dir: str | Path,
    *,
    model: str,
    baseline: tuple[str, dict[str, Any]] | None = None,
    curves: Curves | None = None,
    facts: list[tuple[str, str]] | None = None,
    reference: ReferenceTable | None = None,
    examples: list[Example] | None = None,
) -> dict[str, Path]:
    """Write the panels, the example thumbnails, ``report.md`` and ``report.html`` into ``out_dir``;
    returns ``{name: path}`` of the report files and of each drawn panel."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    label, base = baseline if baseline else ("baseline", None)
    panels = evaluation_panels(summary, out, base, label)
    if curves is not None:
        panels += training_panels(curves, out)
    shown = list(examples or [])
    thumbs = [save_thumbnail(ex.image, out, ex.benchmark, ex.id) for ex in shown]
    all_facts = [("model", model), *(facts or [])]
    if base:
        all_facts.append(("baseline", label))
    tables = _tables(summary, base, label)
    if reference is not None:
        tables.insert(1, _reference_table(summary, reference))
    title = "ThinkFlow evaluation report"
    md = out / "report.md"
    linked = [(ex, f"{EXAMPLES_DIR}/{p.name}") for ex, p in zip(shown, thumbs, strict=True)]
    md.write_text(_markdown(title, all_facts, tables, panels, linked), encoding="utf-8")
    page = out / "report.html"
    page.write_text(_html(title, all_facts, tables, panels, list(zip(shown, thumbs, strict=True))), encoding="utf-8")
    paths = {"report_md": md, "report_html": page}
    paths.update({p.image.stem: p.image for p in panels if p.image})
    return paths
