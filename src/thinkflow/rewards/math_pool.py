"""math-verify in worker processes, one pebble ``ProcessPool`` task per pair, each bounded in time.

sympy never runs in the caller's process. Each ``(gold, answer)`` pair is one task scheduled with
``ProcessPool.schedule(judge, args, timeout=timeout_s)``: when it overruns, pebble stops the worker (SIGTERM,
then SIGKILL after pebble's ``term_timeout`` for work a signal cannot interrupt, such as a C-level big-integer
power ``10^{10^{10}}``) and starts a fresh one; a worker that dies is replaced the same way. The pair then
scores 0 with status ``timeout`` or ``crashed``. So a call is bounded from the main thread, from worker
threads (TRL, HTTP servers) and from processes alike, which math-verify's own ``signal.alarm`` timeouts
are not (they are off in the workers, see `thinkflow.rewards._mathworker`).

Workers are started with ``spawn`` (a fresh interpreter: no forked copy of a training process holding a
model, CUDA state or locked threads); pebble times a task from the moment a worker takes it, after the
worker's warm-up.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pebble import ProcessExpired, ProcessPool

import thinkflow.rewards._mathworker as worker

log = logging.getLogger(__name__)

# Waiting for a result: the pair's own timeout is enforced by pebble, this only guards against a pool that
# cannot start workers at all (e.g. math-verify missing), so that a call never hangs.
STARTUP_TIMEOUT_S = 120.0


class MathPool:
    """Persistent math-verify worker processes with a timeout per pair (see the module docstring).

    Thread-safe. Workers start on first use (or ``start``); ``close`` (also at exit) stops them.
    ``stats`` counts the outcomes: ``ok``, ``gold_unparsed``, ``timeout``, ``crashed``, ``error``.
    """

    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError(f"math workers must be >= 1, got {workers}")
        self.size = workers
        self.pid = os.getpid()
        self.stats: Counter[str] = Counter()
        self._executor: ProcessPool | None = None
        self._finalizer: multiprocessing.util.Finalize | None = None
        self._lock = threading.Lock()

    @property
    def executor(self) -> ProcessPool:
        """The pebble pool, created on first use (and again after it broke)."""
        if os.getpid() != self.pid:  # forked: the parent's pipes are not ours
            raise RuntimeError("MathPool used after fork; create a new pool in the child")
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPool(
                    max_workers=self.size,
                    initializer=worker.warm_up,
                    context=multiprocessing.get_context("spawn"),
                )
                # pebble's workers are not daemons: stop them at exit, before multiprocessing joins its
                # children. A finalizer runs at the exit of the main process and of multiprocessing children
                # alike (which skip atexit), as multiprocessing.Pool registers its own.
                self._finalizer = multiprocessing.util.Finalize(None, _stop, args=(self._executor,), exitpriority=100)
            return self._executor

    def start(self) -> None:
        """Start the workers and wait until every one has warmed up (each has answered a ``ready`` task)."""
        seen: set[int] = set()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(seen) < self.size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"math-verify workers: {len(seen)} of {self.size} started in {STARTUP_TIMEOUT_S} s")
            futures = [self.executor.schedule(worker.ready) for _ in range(self.size)]
            seen.update(future.result(timeout=STARTUP_TIMEOUT_S) for future in futures)

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            self._executor = None
            finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()  # stops the executor, once

    def judge(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str]]:
        """math-verify's ``(verdict, status)`` for each prepared ``(gold, answer)``, each within ``timeout_s``."""
        results = self._judge(pairs, timeout_s)
        broken = [k for k, result in enumerate(results) if result is None]
        if broken:
            # pebble fails every pending task of a pool whose worker died while idle: once more on a fresh pool
            log.warning("math-verify pool broken (a worker died); starting a new one")
            retried = self._judge([pairs[k] for k in broken], timeout_s)
            for k, result in zip(broken, retried, strict=True):
                results[k] = result
        outcomes = [result if result is not None else (False, "crashed") for result in results]
        with self._lock:
            self.stats.update(status for _, status in outcomes)
        return outcomes

    def _judge(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str] | None]:
        """One attempt; ``None`` for the pairs lost to a broken pool (the pool is then dropped)."""
        if not pairs:
            return []
        executor = self.executor
        futures = [executor.schedule(worker.judge, args=tuple(pair), timeout=timeout_s) for pair in pairs]
        results = [self._outcome(future) for future in futures]
        if any(result is None for result in results):
            with self._lock:
                stale = self._executor is executor
            if stale:
                self.close()
        return results

    @staticmethod
    def _outcome(future: Any) -> tuple[bool, str] | None:
        try:
            verdict, status = future.result(timeout=STARTUP_TIMEOUT_S)
            return bool(verdict), str(status)
        except BrokenProcessPool:
            return None
        except FutureTimeout:
            if not future.done():  # no worker took it in STARTUP_TIMEOUT_S: the pool cannot start workers
                future.cancel()
                log.error("math-verify workers did not take a pair within %.0f s", STARTUP_TIMEOUT_S)
            else:
                log.warning("math-verify timed out on a pair; its worker was replaced")
            return False, "timeout"
        except ProcessExpired as exc:
            log.warning("math-verify worker died on a pair (%s); replaced", exc)
            return False, "crashed"
        except Exception as exc:  # raised inside math-verify (RecursionError, parser errors): scores 0
            log.debug("math-verify failed on a pair: %s", exc)
            return False, "error"


_POOLS: dict[int, MathPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(workers: int = 2) -> MathPool:
    """The process-wide pool with ``workers`` workers (one per size; new after a fork)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None or pool.pid != os.getpid():
            pool = MathPool(workers)
            _POOLS[workers] = pool
        return pool


def _stop(executor: ProcessPool) -> None:
    executor.stop()
    executor.join()
