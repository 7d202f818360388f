"""A math-verify worker process: the only place ThinkFlow runs sympy on model output.

Started by ``thinkflow.rewards.math.MathPool`` as ``python -P <this file>`` (a plain script, so starting
it does not import ``thinkflow``, transformers or torch). Protocol, one JSON object per line:

- startup: the worker warms math-verify up, then prints ``{"ready": true}``.
- request ``{"op": "judge", "items": [[gold, pred], ...], "timeout": seconds}``: for each item, in order, the
  worker prints ``{"i": index, "v": verdict, "s": status}`` with status ``ok`` | ``gold_unparsed`` |
  ``timeout`` | ``error``. ``gold`` and ``pred`` are already prepared (LaTeX wrapped in ``$…$``).
- request ``{"op": "parse", "items": [text, ...], "timeout": seconds}``: ``{"i": index, "v": parsed, "s": status,
  "r": repr of the parse}`` per item; ``parsed`` means a math object, not only math-verify's string fallback.

Each item is bounded by ``signal.setitimer`` in this process's main thread (math-verify's own
``signal.alarm`` timeouts are disabled: they only have 1 s resolution and are per call). Work that a
signal cannot interrupt (a C-level big-integer power such as ``10^{10^{10}}``) is bounded by the parent,
which kills this process after the item's deadline and starts another one.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections import OrderedDict
from typing import Any

CACHE_SIZE = 4096


class Deadline(BaseException):
    """Raised by the timer: a BaseException, so math-verify's ``except Exception`` cannot swallow it."""


def _on_timer(signum: int, frame: Any) -> None:
    raise Deadline()


class LRU(OrderedDict[str, Any]):
    def get_or(self, key: str) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        if len(self) > CACHE_SIZE:
            self.popitem(last=False)


def main() -> None:
    logging.disable(logging.CRITICAL)  # math-verify warns on every call with timeouts disabled
    sys.setrecursionlimit(4000)
    from math_verify import parse, verify

    signal.signal(signal.SIGALRM, _on_timer)
    golds = LRU()
    preds = LRU()
    out = sys.stdout

    def emit(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def parsed(cache: LRU, text: str) -> Any:
        hit = cache.get_or(text)
        if hit is None:
            hit = parse(text, parsing_timeout=None)
            cache.put(text, hit)
        return hit

    def judge(gold: str, pred: str) -> tuple[bool, str]:
        g = parsed(golds, gold)
        if not g:
            return False, "gold_unparsed"
        p = parsed(preds, pred)
        return bool(verify(g, p, timeout_seconds=None)), "ok"

    def parse_one(text: str) -> tuple[bool, str, str]:
        result = parse(text, parsing_timeout=None)
        # parsed = math-verify got a math object, not only its string fallback
        return any(not isinstance(x, str) for x in result), "ok", repr(result)[:200]

    # Warm up before reporting ready: math-verify loads its grammar and sympy modules lazily on first use,
    # which must not eat into the first item's time budget.
    verify(parse("$1$", parsing_timeout=None), parse("$\\frac{x}{2} + 1$", parsing_timeout=None), timeout_seconds=None)
    emit({"ready": True})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            op, items, seconds = request["op"], request["items"], float(request["timeout"])
        except (ValueError, KeyError, TypeError):
            emit({"error": "bad request"})
            continue
        for index, item in enumerate(items):
            reply: dict[str, Any] = {"i": index}
            try:
                try:
                    signal.setitimer(signal.ITIMER_REAL, seconds)
                    if op == "judge":
                        reply["v"], reply["s"] = judge(str(item[0]), str(item[1]))
                    else:
                        reply["v"], reply["s"], reply["r"] = parse_one(str(item))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except Deadline:
                reply.update(v=False, s="timeout")
            except (Exception, RecursionError):
                reply.update(v=False, s="error")
            emit(reply)


if __name__ == "__main__":
    main()
