"""The ``thinkflow`` command line. Commands stay thin: parse arguments, call one library function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from thinkflow.config import ConfigError, StageConfig, load_config

app = typer.Typer(help="ThinkFlow: train R1-style reasoning VLMs with the VLAA-Thinker recipe.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: import, synthesize, validate.", no_args_is_help=True)
rewards_app = typer.Typer(help="Rewards: score completions with the mixed reward.", no_args_is_help=True)
models_app = typer.Typer(help="Registered models in MLflow.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(rewards_app, name="rewards")
app.add_typer(models_app, name="models")
console = Console()
C = TypeVar("C", bound=StageConfig)

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="Preset name or YAML file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set lr=1e-6 (repeatable).")]
PrintOpt = Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")]


def resolve_config(cls: type[C], config: str | None, sets: list[str] | None, print_only: bool) -> C:
    """Load a stage config for a command; print it and exit with ``--print-config``; config errors exit 2."""
    try:
        cfg = load_config(cls, config, sets)
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None
    if print_only:
        typer.echo(cfg.to_yaml())
        raise typer.Exit(0)
    return cfg


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
) -> None:
    """Ask a model a question about an image and print its answer (greedy, the paper's system prompt)."""
    from PIL import Image

    from thinkflow.evaluate.generate import generate
    from thinkflow.models.load import load

    mdl, proc = load(model)
    with Image.open(image) as im:
        answer = generate(mdl, proc, [im.convert("RGB")], [question], max_new_tokens=max_new_tokens)[0]
    console.print(f"[bold]Q:[/bold] {question}\n[bold]A:[/bold] {answer!r}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
