"""The core of the ``thinkflow`` command line: the app, its one error handler and the shared options.

Commands stay thin (parse arguments, call one library function) and live by subject in the sibling modules
(`thinkflow.cli.pipelines`, `data`, `stages`, `models`, `serving`), which `thinkflow.cli` imports to register
them. Everything heavy is imported inside the commands, so ``thinkflow --help`` stays fast
(bench/cli_startup.py).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from thinkflow.config import StageConfig, explain, load_config
from thinkflow.errors import DEBUG_ENV, ThinkFlowError, debug_enabled, one_line

USER_ERRORS = (ThinkFlowError, OSError, ValueError)  # what a user can cause: printed as one line


class ThinkFlowGroup(TyperGroup):
    """The one error handler: a user error prints one line and exits 1 (2 for usage); ``--debug`` re-raises."""

    def invoke(self, ctx: Any) -> Any:  # typer's (vendored) click Context
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            if debug_enabled():
                raise
            code = getattr(exc, "exit_code", 1)
            err_console.print(f"[red]error:[/red] {error_line(exc)}", soft_wrap=True, highlight=False)
            raise typer.Exit(code) from None


def error_line(exc: BaseException) -> str:
    """One line for a user error; files of OS errors are named, and ``--debug`` is offered for the rest."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    line = one_line(exc)
    return line if isinstance(exc, ThinkFlowError) else f"{line} ({type(exc).__name__}; --debug shows the traceback)"


app = typer.Typer(
    cls=ThinkFlowGroup,
    help="ThinkFlow: train R1-style reasoning VLMs with the VLAA-Thinker recipe.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Datasets: import, synthesize, validate.", no_args_is_help=True)
rewards_app = typer.Typer(help="Rewards: score completions with the mixed reward.", no_args_is_help=True)
models_app = typer.Typer(help="Registered models in MLflow.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(rewards_app, name="rewards")
app.add_typer(models_app, name="models")
console = Console()
err_console = Console(stderr=True)
C = TypeVar("C", bound=StageConfig)


@app.callback()
def main_options(
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """ThinkFlow: train R1-style reasoning VLMs with the VLAA-Thinker recipe."""
    if debug:
        import os

        os.environ[DEBUG_ENV] = "1"  # the pipeline's tasks (subprocesses) inherit it


def use_store() -> str:
    """Point this command at the one MLflow store (`thinkflow.tracking.store_uri`) and say which it is."""
    from thinkflow.tracking import use_store as _use

    uri = _use()
    err_console.print(f"MLflow store: {uri}", soft_wrap=True, highlight=False)
    return uri


# Every stage command declares these four options in its own signature (typer reads a command's options from
# its parameters), then calls `resolve_config`: those few lines repeat across the command modules by design.
ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="Preset name or YAML file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set lr=1e-6 (repeatable).")]
PrintOpt = Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")]
ExplainOpt = Annotated[
    bool, typer.Option("--explain", help="With --print-config: every key with its type, value and meaning.")
]


def resolve_config(
    cls: type[C], config: str | None, sets: list[str] | None, print_only: bool, explained: bool = False
) -> C:
    """Load a stage config for a command; print it and exit with ``--print-config`` (each key explained with
    ``--explain``); config errors exit 2."""
    if explained and not print_only:
        raise typer.BadParameter("only with --print-config", param_hint="--explain")
    cfg = load_config(cls, config, sets)
    if print_only and explained:
        print_explained(cfg)
        raise typer.Exit(0)
    if print_only:
        typer.echo(cfg.to_yaml())
        raise typer.Exit(0)
    return cfg


def print_explained(cfg: StageConfig) -> None:
    """`thinkflow.config.explain` as a table on a terminal; piped, one tab-separated line per key (nothing cut).

    Columns: dotted key, type, current value (JSON; empty for a section, whose keys follow), description.
    """
    import json

    rows = [
        (r.key, r.type, "" if r.section else json.dumps(r.value, ensure_ascii=False), r.description)
        for r in explain(cfg)
    ]
    if not console.is_terminal:
        typer.echo("\n".join("\t".join(row) for row in [("key", "type", "value", "description"), *rows]))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=type(cfg).__name__)
    for col in ("key", "type", "value", "description"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
