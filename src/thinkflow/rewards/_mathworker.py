"""What runs inside a math-verify worker process: the only place ThinkFlow runs sympy on model output.

`thinkflow.rewards.math_pool.MathPool` starts the workers (pebble, ``spawn``) with ``warm_up`` as their
initializer and schedules ``judge`` once per ``(gold, answer)`` pair, on the worker the gold hashes to. Both
sides arrive prepared (``math_fast.prepare``: LaTeX wrapped in ``$…$``). math-verify's own timeouts are off
(``parsing_timeout=None``, ``timeout_seconds=None``: they use ``signal.alarm``, main thread only, 1 s
resolution); the pool bounds each pair with pebble's per-task timeout, which stops this process and starts a
fresh one. This module imports nothing from ThinkFlow itself (a worker imports only the ``thinkflow`` and
``thinkflow.rewards`` packages to reach it; no torch, no transformers).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Any

CACHE_SIZE = 4096


def warm_up() -> None:
    """Worker initializer: load math-verify's grammar and sympy modules before the first pair is timed."""
    logging.disable(logging.CRITICAL)  # math-verify warns on every call with timeouts disabled
    sys.setrecursionlimit(4000)
    from math_verify import parse, verify

    verify(parse("$1$", parsing_timeout=None), parse("$\\frac{x}{2} + 1$", parsing_timeout=None), timeout_seconds=None)


def ready() -> int:
    """This worker's pid: answered once the initializer has warmed it up (``MathPool.start``)."""
    return os.getpid()


def _parse(text: str) -> Any:
    from math_verify import parse

    return parse(text, parsing_timeout=None)


# Golds repeat across a GRPO group and across steps: each worker parses one gold once.
_gold = functools.lru_cache(maxsize=CACHE_SIZE)(_parse)
_answer = functools.lru_cache(maxsize=CACHE_SIZE)(_parse)


def judge(gold: str, answer: str) -> tuple[bool, str]:
    """math-verify's verdict ``verify(parse(gold), parse(answer))`` and a status: ``ok`` | ``gold_unparsed``."""
    from math_verify import verify

    parsed_gold = _gold(gold)
    if not parsed_gold:
        return False, "gold_unparsed"
    return bool(verify(parsed_gold, _answer(answer), timeout_seconds=None)), "ok"
