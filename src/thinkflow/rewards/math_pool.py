"""math-verify in worker processes, one pebble ``ProcessPool`` task per pair, each bounded in time.

sympy never runs in the caller's process. Each ``(gold, answer)`` pair is one task scheduled with
``ProcessPool.schedule(judge, args, timeout=timeout_s)``: when it overruns, pebble stops the worker (SIGTERM,
then SIGKILL after pebble's ``term_timeout`` for work a signal cannot interrupt, such as a C-level big-integer
power ``10^{10^{10}}``) and starts a fresh one; a worker that dies is replaced the same way. The pair then
scores 0 with status ``timeout`` or ``crashed``. So a call is bounded from the main thread, from worker
threads (TRL, HTTP servers) and from processes alike, which math-verify's own ``signal.alarm`` timeouts
are not (they are off in the workers, see `thinkflow.rewards._mathworker`).

Each worker is a one-process pebble pool and a pair goes to the worker its gold hashes to: every worker
caches the golds it parsed, so a gold is parsed by one worker only (GRPO scores the same gold for a whole
group, step after step; with a shared queue each worker parsed it again, 1.4x the worker CPU in
``bench/rewards.py``). A batch with several golds is spread over the workers.

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
import zlib
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
        self._executors: list[ProcessPool | None] = [None] * workers
        self._finalizers: list[multiprocessing.util.Finalize | None] = [None] * workers
        self._lock = threading.Lock()

    def executor(self, k: int) -> ProcessPool:
        """Worker ``k``'s one-process pebble pool, created on first use (and again after it broke)."""
        if os.getpid() != self.pid:  # forked: the parent's pipes are not ours
            raise RuntimeError("MathPool used after fork; create a new pool in the child")
        with self._lock:
            executor = self._executors[k]
            if executor is None:
                executor = self._executors[k] = ProcessPool(
                    max_workers=1, initializer=worker.warm_up, context=multiprocessing.get_context("spawn")
                )
                # pebble's workers are not daemons: stop them at exit, before multiprocessing joins its
                # children. A finalizer runs at the exit of the main process and of multiprocessing children
                # alike (which skip atexit), as multiprocessing.Pool registers its own.
                self._finalizers[k] = multiprocessing.util.Finalize(None, _stop, args=(executor,), exitpriority=100)
            return executor

    def start(self) -> None:
        """Start the workers and wait until every one has warmed up."""
        futures = [self.executor(k).schedule(worker.ready) for k in range(self.size)]
        for future in futures:
            future.result(timeout=STARTUP_TIMEOUT_S)

    def close(self) -> None:
        """Stop every worker."""
        for k in range(self.size):
            self._close(k)

    def _close(self, k: int, executor: ProcessPool | None = None) -> None:
        """Stop worker ``k`` (only if it still is ``executor``, when given)."""
        with self._lock:
            if executor is not None and self._executors[k] is not executor:
                return
            finalizer = self._finalizers[k]
            self._executors[k] = self._finalizers[k] = None
        if finalizer is not None:
            finalizer()  # stops the executor, once

    def judge(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str]]:
        """math-verify's ``(verdict, status)`` for each prepared ``(gold, answer)``, each within ``timeout_s``."""
        results = self._judge(pairs, timeout_s)
        broken = [k for k, result in enumerate(results) if result is None]
        if broken:
            # pebble fails every pending task of a pool whose worker died while idle: once more on a fresh pool
            log.warning("math-verify worker pool broken (its worker died); starting a new one")
            retried = self._judge([pairs[k] for k in broken], timeout_s)
            for k, result in zip(broken, retried, strict=True):
                results[k] = result
        outcomes = [result if result is not None else (False, "crashed") for result in results]
        with self._lock:
            self.stats.update(status for _, status in outcomes)
        return outcomes

    def _judge(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str] | None]:
        """One attempt; ``None`` for the pairs lost to a broken worker pool (which is then dropped)."""
        routes = [zlib.crc32(gold.encode()) % self.size for gold, _ in pairs]
        executors = {k: self.executor(k) for k in sorted(set(routes))}
        futures = [
            executors[k].schedule(worker.judge, args=tuple(pair), timeout=timeout_s)
            for k, pair in zip(routes, pairs, strict=True)
        ]
        results = [self._outcome(future) for future in futures]
        for k in {k for k, result in zip(routes, results, strict=True) if result is None}:
            self._close(k, executors[k])
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


def _stop(executor: ProcessPool) -> None:
    executor.stop()
    executor.join()


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
