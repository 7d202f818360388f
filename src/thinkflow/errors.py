"""The one base of every error a user can cause.

``str(exc)`` is the user-facing message: one line naming the file, record, key or host and what to do.
The CLI catches `ThinkFlowError` in one place (`thinkflow.cli`), prints that line and exits with
``exit_code`` (1; 2 for usage errors such as a bad config key); ``--debug`` or ``THINKFLOW_DEBUG=1``
shows the traceback instead. Subclasses keep their historical builtin base (``ValueError``,
``RuntimeError``) as a second base, so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

from thinkflow import env

DEBUG_ENV = env.DEBUG


class ThinkFlowError(Exception):
    """An error a user can cause and fix; the message says which input and what to do."""

    exit_code = 1


class UsageError(ThinkFlowError):
    """A wrong command line or configuration (exit code 2)."""

    exit_code = 2


def debug_enabled() -> bool:
    """``THINKFLOW_DEBUG`` is set to a true value (``--debug`` sets it for the process and its tasks)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (multi-line messages joined with ``; ``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` (difflib), or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
