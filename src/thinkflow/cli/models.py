"""Models: ``tiny-model``, ``ask``, and the registry (``register``, ``promote``, ``models list``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinkflow.cli.core import (
    ConfigOpt,
    ExplainOpt,
    PrintOpt,
    SetOpt,
    app,
    console,
    models_app,
    resolve_config,
    use_store,
)


@app.command("tiny-model")
def tiny_model(
    out_dir: Path,
    family: Annotated[str, typer.Option(help="qwen2.5-vl | qwen2-vl")] = "qwen2.5-vl",
    seed: Annotated[int, typer.Option(help="Random seed for weights and tokenizer.")] = 0,
) -> None:
    """Build a tiny random Qwen2.5-VL / Qwen2-VL offline and save it to OUT_DIR."""
    from thinkflow.models.tiny import FAMILIES, build_tiny

    if family not in FAMILIES:
        raise typer.BadParameter(f"choose one of {', '.join(FAMILIES)}", param_hint="--family")
    path = build_tiny(out_dir, family=family, seed=seed)  # type: ignore[arg-type]
    console.print(f"tiny {family} saved to {path}")


@app.command("ask")
def ask(
    model: Annotated[str, typer.Argument(help="Model dir or s3:// URI.")],
    image: Annotated[Path, typer.Option(help="Image file.")],
    question: Annotated[str, typer.Option(help="Question about the image.")],
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget.")] = 64,
    system_prompt: Annotated[
        str | None,
        typer.Option(help='System prompt (default: the VLAA-Thinker prompt, as in training; "" for none).'),
    ] = None,
) -> None:
    """Ask a model a question about an image and print its answer (greedy, the training system prompt)."""
    from PIL import Image

    from thinkflow.evaluate.generate import generate
    from thinkflow.format import SYSTEM_PROMPT
    from thinkflow.models.load import load

    mdl, proc = load(model)
    prompt = SYSTEM_PROMPT if system_prompt is None else system_prompt
    with Image.open(image) as im:
        answer = generate(
            mdl, proc, [im.convert("RGB")], [question], max_new_tokens=max_new_tokens, system_prompt=prompt
        )[0]
    console.print(f"[bold]Q:[/bold] {question}\n[bold]A:[/bold] {answer!r}")


@app.command("register")
def register_command(
    config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False, explain: ExplainOpt = False
) -> None:
    """Register a model version in MLflow (description, tags, @challenger), then run the promotion gate."""
    from thinkflow.registry import RegisterConfig, register

    cfg = resolve_config(RegisterConfig, config, sets, print_config, explain)
    use_store()
    result = register(cfg)
    made = "registered" if result.metrics.get("created") else "already registered as"
    console.print(f"[green]{made}[/green] {result.output}")
    if "gate" in result.artifacts:
        console.print(f"gate: {result.artifacts['gate']} ({result.artifacts['gate_reason']})")
    if "lineage_missing" in result.artifacts:
        console.print(f"[yellow]lineage unknown:[/yellow] {result.artifacts['lineage_missing']}")


@app.command("promote")
def promote_command(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to make @champion (an older one: the rollback).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the version description).")],
    wait_serving: Annotated[
        bool, typer.Option("--wait-serving", help="Wait until serve-sync reports the version answering.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait-serving waits.")] = 1800.0,
) -> None:
    """Move @champion to a version by hand, recording the reason; serve-sync rolls the serving Deployment."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from thinkflow.registry import promote
    from thinkflow.serving.sync import ServingError, served_history
    from thinkflow.serving.sync import wait_serving as wait

    use_store()
    client = MlflowClient()
    try:
        before = len(served_history(client.get_model_version(name, version).tags or {})) if wait_serving else 0
    except MlflowException as exc:  # the version lookup: one line, not a traceback
        raise ServingError(f"{name} version {version}: {exc}") from None
    decision = promote(name, version, reason, client=client)
    console.print(f"[green]{name} version {version} is @champion[/green] (was: {decision.champion_version or 'none'})")
    if not wait_serving:
        return
    if decision.champion_version == str(version):
        console.print(f"version {version} already held @champion: nothing new to roll out")
        return
    try:
        entry = wait(name, version, served_before=before, timeout_s=timeout, client=client)
    except ServingError as exc:
        console.print(f"[red]not served:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"[green]serving version {version}[/green] on {entry.get('deployment')} since {entry.get('at')}")


@models_app.command("list")
def models_list(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """Versions of a registered model with their aliases, gate decisions and key metrics (TSV when piped)."""
    from thinkflow.registry import list_versions

    use_store()
    columns = ("version", "aliases", "created", "gate", "mean score", "scores", "content")
    rows = []
    for r in list_versions(name):
        metrics = dict(r["metrics"])
        mean = metrics.pop("overall.mean_score", None)
        scores = " ".join(f"{k.removesuffix('.score')}={v:.3f}" for k, v in sorted(metrics.items()))
        aliases = ", ".join(f"@{a}" for a in r["aliases"])
        rows.append((r["version"], aliases, r["created"], r["gate"], f"{mean:.4f}" if mean is not None else "", scores,
                     r["content_hash"]))  # fmt: skip
    if not console.is_terminal:  # piped or redirected: tab-separated, one line per version, nothing cut
        for row in (columns, *rows):
            typer.echo("\t".join(row))
        return
    from rich.table import Table

    table = Table(title=name)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row[:-1], row[-1][:12])
    console.print(table)
