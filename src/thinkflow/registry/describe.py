"""What a person sees on a model version's page: a few tags to filter by, and a Markdown description.

Tags (at most `MAX_TAGS` written by registration and the gate; serving adds at most two more,
``thinkflow.served_at`` and ``serving_failed`` (`thinkflow.serving.sync`), so a version page shows at most twelve):

- ``thinkflow.content_hash`` (idempotency, serving's download check), ``thinkflow.source``
- ``lineage.stage``, ``lineage.base_model``, ``lineage.dataset_uri``
- ``eval.set_hash``, ``eval.<gate metric>`` and ``eval.base.<gate metric>`` (what the gate compares)
- ``gate.decision``, ``gate.champion_version`` (written by `thinkflow.registry.gate`)

Everything else is in the description (a metrics table, the lineage with links to the training run, the
dataset and the report, the gate's decision and reasoning), in the register run (``lineage.json``,
``eval/metrics.json``, the report files, every lineage field as a run tag) and in the model's own
``lineage.json``. Links are relative to the MLflow UI (``#/runs/<id>`` opens a run).
"""

from __future__ import annotations

import json
from typing import Any

from thinkflow.registry.lineage import CONTENT_HASH_TAG

SOURCE_TAG = "thinkflow.source"
MAX_TAGS = 10
MAX_TAG_CHARS = 5000  # portable across registry backends (MLflow itself allows more)
FILTER_LINEAGE = ("stage", "base_model", "dataset_uri")  # the lineage.* tags a person filters versions by
RECOMPUTED_PREFIXES = ("eval.", "lineage.")  # ours, recomputed on every registration (stale ones are deleted)
# Column order of the metrics table (other numbers follow, sorted).
COLUMNS = ("score", "accuracy", "format_rate", "mean_reward", "mean_length", "n")


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TAG_CHARS else text[: MAX_TAG_CHARS - 15] + "...(truncated)"


def version_tags(
    *, digest: str, source: str, fields: dict[str, Any], metrics: dict[str, Any] | None, gate_metric: str
) -> dict[str, str]:
    """The version tags registration writes (see the module doc); ``fields`` from `lineage.lineage_fields`."""
    from thinkflow.evaluate.metrics import flatten_metrics

    tags = {CONTENT_HASH_TAG: digest, SOURCE_TAG: source}
    tags.update({f"lineage.{k}": _text(fields[k]) for k in FILTER_LINEAGE if fields.get(k)})
    if metrics is not None:
        flat = flatten_metrics(metrics)
        tags["eval.set_hash"] = str(metrics.get("eval_set_hash", ""))
        tags.update({f"eval.{k}": repr(flat[k]) for k in (gate_metric, f"base.{gate_metric}") if k in flat})
    return tags


def run_tags(fields: dict[str, Any], missing: list[str], lineage_present: bool) -> dict[str, str]:
    """The register run's tags: every lineage field (``lineage.*``) and what is unknown (``lineage.missing``)."""
    tags = {f"lineage.{k}": _text(v) for k, v in fields.items() if v not in (None, "", {}, [])}
    if not lineage_present:
        tags["lineage.file"] = "absent"
    tags["lineage.missing"] = ", ".join(missing) if missing else "none"
    return tags


def _cell(key: str, value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    return str(int(value)) if key == "n" or key.startswith("n_") else f"{value:.4f}"


def metrics_table(metrics: dict[str, Any]) -> list[str]:
    """Markdown rows: overall, each benchmark, each verifier type, the base model; one column per number."""
    rows: list[tuple[str, dict[str, Any]]] = [("**overall**", metrics.get("overall") or {})]
    rows += [(f"`{name}`", m) for name, m in sorted((metrics.get("benchmarks") or {}).items())]
    rows += [(f"verifier `{name}`", m) for name, m in sorted((metrics.get("per_verifier") or {}).items())]
    base = metrics.get("base") or {}
    if base.get("overall"):
        rows.append((f"base model `{base.get('model', '')}`", base["overall"]))
    # overall's headline is mean_score (the mean of the benchmark scores): shown in the score column
    rows = [(label, {("score" if k == "mean_score" else k): v for k, v in m.items()}) for label, m in rows]
    keys = {k for _, m in rows for k, v in m.items() if isinstance(v, int | float)}
    columns = [c for c in COLUMNS if c in keys] + sorted(keys - set(COLUMNS))
    out = ["| | " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    out += [f"| {label} | " + " | ".join(_cell(c, m.get(c)) for c in columns) + " |" for label, m in rows]
    return out


def _run_link(run_id: str | None) -> str:
    return f"[`{run_id}`](#/runs/{run_id})" if run_id else "unknown"


def version_description(
    *,
    note: str | None,
    source: str,
    digest: str,
    fields: dict[str, Any],
    missing: list[str],
    lineage_present: bool,
    metrics: dict[str, Any] | None,
    eval_uri: str | None,
    register_run_id: str | None,
) -> str:
    """The version's Markdown description (the gate appends its section, `gate.with_gate_section`)."""
    lines = [note.strip(), ""] if note and note.strip() else []
    lines += [f"Registered by ThinkFlow from `{source}` (content hash `{digest[:16]}`).", "", "## Evaluation", ""]
    if metrics is None:
        lines.append("Registered without an evaluation: the gate has nothing to compare.")
    else:
        report = f"`{eval_uri}`" if eval_uri else "unknown"
        lines += [
            f"Eval set `{str(metrics.get('eval_set_hash', ''))[:16]}`; report: {report}, attached to the register "
            f"run {_run_link(register_run_id)} under `eval/`.",
            "",
            *metrics_table(metrics),
        ]
    dataset = f"`{fields['dataset_uri']}`" if fields.get("dataset_uri") else "unknown"
    extras = [f"split `{fields['dataset_split']}`" if fields.get("dataset_split") else ""]
    extras.append(f"manifest `{fields['dataset_manifest_hash']}`" if fields.get("dataset_manifest_hash") else "")
    if any(extras):
        dataset += f" ({', '.join(e for e in extras if e)})"
    table = [
        ("training run", _run_link(fields.get("training_run_id"))),
        ("dataset", dataset),
        ("base model", f"`{fields['base_model']}`" if fields.get("base_model") else "unknown"),
        ("stage", str(fields.get("stage") or "unknown")),
        ("reward mix", f"`{_text(fields['reward_mix'])}`" if fields.get("reward_mix") else "unknown"),
        ("git commit", f"`{fields['git_sha']}`" if fields.get("git_sha") else "unknown"),
        ("pipeline run", f"`{fields['pipeline_run_id']}`" if fields.get("pipeline_run_id") else "unknown"),
        ("image", f"`{fields['image']}`" if fields.get("image") else "unknown"),
        ("full lineage", f"`lineage.json` of the register run {_run_link(register_run_id)} and of the model"),
    ]
    lines += ["", "## Lineage", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in table]]
    if missing:
        lines += ["", f"Unknown lineage: {', '.join(missing)}" + ("" if lineage_present else " (no lineage.json).")]
    return "\n".join(lines) + "\n"


def model_card_text(name: str, description: str) -> str:
    """The Hugging Face model card logged with the model: front matter, then the version description."""
    front = ["---", "library_name: transformers", "pipeline_tag: image-text-to-text"]
    front += ["tags: [thinkflow, vlaa-thinker, grpo]", "---", f"# {name}", ""]
    return "\n".join(front) + "\n" + description
