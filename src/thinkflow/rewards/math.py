"""``math``: math-verify equivalence (``parse``/``verify``, gold first), fast and bounded in time.

Semantics are math-verify's: ``verify(parse(gold), parse(answer))``, with bare LaTeX wrapped in ``$…$``
first (``parse(r"\\frac{\\sqrt{3}}{3}")`` alone returns nothing), so equivalent forms score 1: ``0.5`` =
``\\frac{1}{2}`` = ``\\frac{2}{4}`` = ``x = \\frac12``; ``\\sqrt{18}`` = ``3\\sqrt{2}``; ``60^\\circ`` = ``60``.

How it is fast (see ``bench/rewards.py``):

1. the fast path (`thinkflow.rewards.math_fast`), conservative by construction: it decides a pair only where
   it mirrors math-verify's extraction, normalization and grader rule by rule, and leaves everything else to
   math-verify; ``tests/unit/test_rewards_math_fuzz.py`` checks it against raw math-verify;
2. caches: the fast-path analysis of each text, and the verdicts of ``(gold, answer)`` pairs already judged
   (GRPO groups repeat answers);
3. math-verify in worker processes (`thinkflow.rewards.math_pool`) with the gold parsed once per worker,
   the pairs of a batch spread over the workers.

How it is bounded in time: sympy never runs in the caller's process; each pair gets ``timeout_s`` in a
worker (pebble's per-task timeout; an overrunning worker is stopped and replaced) and then scores 0. So a call
is bounded from the main thread, from worker threads (TRL, HTTP servers) and from processes alike. Answers
longer than ``max_answer_chars`` score 0 without parsing.

No departure from raw math-verify: a gold that math-verify cannot parse scores 0 for every answer; plain
numbers with a thousands separator or a decimal comma (``1,000``, ``1,22``) are left unwrapped by ``prepare``
so math-verify reads them as numbers.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cachetools import LRUCache

from thinkflow.format import solution_text
from thinkflow.rewards.math_fast import analyze, fast_verdict, prepare
from thinkflow.rewards.math_pool import MathPool, get_pool

DEFAULT_TIMEOUT_S = 1.0
DEFAULT_MAX_ANSWER_CHARS = 1000


class MathVerifier:
    """Scores answers against math golds; see the module docstring for semantics and speed.

    ``stats`` counts how each item was decided: ``exact``, ``numeric``, ``cached``, ``verified``,
    ``too_long``, ``timeout``, ``crashed``, ``error``, ``gold_unparsed``, ``no_answer``.
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = 2,
        max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
        cache_size: int = 1 << 16,
        pool: MathPool | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.workers = workers
        self.max_answer_chars = max_answer_chars
        self._pool = pool
        self._analysis = functools.lru_cache(maxsize=cache_size)(analyze)
        self._verdicts: LRUCache[tuple[str, str], bool] = LRUCache(maxsize=cache_size)
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    @property
    def pool(self) -> MathPool:
        if self._pool is None or self._pool.pid != os.getpid():
            self._pool = get_pool(self.workers)
        return self._pool

    def score_many(self, answers: Sequence[str | None], solutions: Sequence[Any]) -> list[float]:
        """One reward (0.0 or 1.0) per ``(answer, solution)``; ``None`` answers score 0."""
        if len(answers) != len(solutions):
            raise ValueError(f"{len(answers)} answers but {len(solutions)} solutions")
        rewards = [0.0] * len(answers)
        slow: dict[tuple[str, str], list[int]] = {}
        for i, (answer, solution) in enumerate(zip(answers, solutions, strict=True)):
            if answer is None:
                self.stats["no_answer"] += 1
                continue
            if len(answer) > self.max_answer_chars:
                self.stats["too_long"] += 1
                continue
            gold = solution_text(solution)
            gold_analysis, answer_analysis = self._analysis(gold), self._analysis(answer)
            verdict = fast_verdict(gold_analysis, answer_analysis)
            if verdict is not None:
                self.stats["exact" if gold_analysis.key == answer_analysis.key else "numeric"] += 1
                rewards[i] = float(verdict)
                continue
            pair = (prepare(gold), prepare(answer))
            with self._lock:
                cached = self._verdicts.get(pair)
            if cached is not None:
                self.stats["cached"] += 1
                rewards[i] = float(cached)
                continue
            slow.setdefault(pair, []).append(i)
        if slow:
            pairs = list(slow)
            outcomes = self.pool.judge(pairs, self.timeout_s)
            for pair, (verdict, status) in zip(pairs, outcomes, strict=True):
                self.stats["verified" if status == "ok" else status] += len(slow[pair])
                with self._lock:
                    self._verdicts[pair] = verdict
                for i in slow[pair]:
                    rewards[i] = float(verdict)
        return rewards
