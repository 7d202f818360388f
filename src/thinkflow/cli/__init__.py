"""The ``thinkflow`` command line (typer). Commands stay thin: parse arguments, call one library function.

`thinkflow.cli.core` holds the app, its one error handler (every `thinkflow.errors.ThinkFlowError` prints one
line) and the shared options; the command modules below register their commands on it when imported, in the
order ``thinkflow --help`` lists them. The entry point is ``thinkflow.cli:app``; ``python -m thinkflow.cli``
runs the same app.
"""

from __future__ import annotations

from thinkflow.cli import data, docs, models, pipelines, serving, stages  # noqa: F401  (they register their commands)
from thinkflow.cli.core import app

__all__ = ["app", "main"]


def main() -> None:
    app()
