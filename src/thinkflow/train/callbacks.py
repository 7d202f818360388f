"""Trainer callbacks: training metrics into the stage's MLflow run, and a console line per log step.

`MLflowMetricsCallback` logs every numeric value the trainer logs (TRL's names, e.g. ``loss``, ``kl``,
``reward``, ``reward_std``, ``frac_reward_zero_std``, ``completions/mean_length``, ``entropy``,
``learning_rate``; the mixed reward's ``rewards/<verifier>/mean`` and format-failure rate through TRL's
metric hook) at the trainer's ``global_step``, and adds what TRL does not compute:

- ``tokens_per_second`` and ``tokens_per_second_per_device``: prompt + completion tokens processed
  (``state.num_input_tokens_seen``) per wall-clock second since the previous log;
- ``step_seconds``: wall-clock seconds per optimizer step since the previous log (TRL's own
  ``step_time`` counts only the forward/backward of a GRPO step and is kept as it is).

It writes with an `MlflowClient` to a fixed run id, so it does not depend on which run is "active" in
the process. Only the main process logs; values are buffered and handed to MLflow's logging thread every
``flush_every_s`` seconds (and at the end of training), so a training step never waits on the store.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-./ ]")
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
# The Trainer's end-of-training summary log has this key (no step timing for it).
_SUMMARY_KEY = "train_loss"


def metric_name(key: str) -> str:
    """A trainer log key as a valid MLflow metric name."""
    return _BAD_CHARS.sub("_", key)


def numeric_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a trainer log dict, with MLflow-safe names (strings and NaN dropped)."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(float(value)):
            continue
        out[metric_name(key)] = float(value)
    return out


class MLflowMetricsCallback(TrainerCallback):
    """Log trainer metrics (plus tokens/s and step time) to one MLflow run."""

    def __init__(self, run_id: str, *, world_size: int = 1, flush_every_s: float = 10.0) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient()
        self.run_id = run_id
        self.world_size = max(1, world_size)
        self.flush_every_s = flush_every_s
        self.last: dict[str, float] = {}
        self._buffer: list[Any] = []
        self._pending: list[Any] = []
        self._flushed = time.perf_counter()
        self._step_mark: tuple[float, int] | None = None  # (time, global_step) at the previous log
        self._token_mark: tuple[float, int] | None = None  # (time, tokens seen) when the count last moved

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        now = time.perf_counter()
        self._step_mark = (now, state.global_step)
        self._token_mark = (now, int(state.num_input_tokens_seen or 0))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        from mlflow.entities import Metric

        metrics = numeric_metrics(logs)
        now = time.perf_counter()
        if _SUMMARY_KEY not in logs:
            if self._step_mark is not None:
                then, step = self._step_mark
                if now > then and state.global_step > step:
                    metrics["step_seconds"] = (now - then) / (state.global_step - step)
                    self._step_mark = (now, state.global_step)
            # GRPO counts a rollout's tokens when it is generated, then trains on them for several steps:
            # measure between two logs where the count moved.
            tokens = int(state.num_input_tokens_seen or 0)
            if self._token_mark is not None and tokens > self._token_mark[1] and now > self._token_mark[0]:
                rate = (tokens - self._token_mark[1]) / (now - self._token_mark[0])
                metrics["tokens_per_second"] = rate
                metrics["tokens_per_second_per_device"] = rate / self.world_size
                self._token_mark = (now, tokens)
        if not metrics:
            return
        self.last.update(metrics)
        stamp = int(time.time() * 1000)
        self._buffer.extend(Metric(key=k, value=v, timestamp=stamp, step=state.global_step) for k, v in metrics.items())
        if now - self._flushed >= self.flush_every_s:
            self._send()

    def _send(self) -> None:
        """Queue the buffered metrics for MLflow's logging thread (the training step does not wait on the store)."""
        self._flushed = time.perf_counter()
        buffer, self._buffer = self._buffer, []
        for start in range(0, len(buffer), MAX_METRICS_PER_BATCH):
            chunk = buffer[start : start + MAX_METRICS_PER_BATCH]
            operation = self.client.log_batch(self.run_id, metrics=chunk, synchronous=False)
            if operation is not None:
                self._pending.append(operation)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.flush()

    def flush(self) -> None:
        """Send what is buffered and wait until it is in the tracking store (raises the store's error, if any)."""
        self._send()
        pending, self._pending = self._pending, []
        for operation in pending:
            operation.wait()
