"""Adaptive KL coefficient for GRPO (the paper's "KL2": initial 1e-3, target 5e-4) on TRL's `GRPOTrainer`.

The controller is OpenRLHF's ``AdaptiveKLController`` (Ziegler et al. 2019, arXiv 1909.08593 §2.2), read
in OpenRLHF ``openrlhf/trainer/ppo_utils/kl_controller.py:15-19`` (commit 3c3be62)::

    proportional_error = clip(current / target - 1, -0.2, 0.2)
    value *= 1 + proportional_error * n_steps / horizon

OpenRLHF calls ``update(kl, rollout_batch_size * n_samples_per_prompt)`` once per rollout, after the
policy was trained on it, with the rollout's mean KL (``openrlhf/trainer/ppo_trainer.py:253``), and uses the
new value for the next rollout. `AdaptiveKLCallback` does the same on TRL: it collects the KL values TRL
measures during the optimizer steps of one rollout (``updates_per_rollout`` steps of `batch_plan`), updates
the controller at the rollout's last step and sets the trainer's ``beta`` (the coefficient TRL's loss
multiplies the per-token KL with, ``GRPOTrainer._compute_loss``). ``kl_coef`` goes into TRL's metrics every
step, so it is logged with ``kl``, ``reward``… The controller's value is saved in checkpoints (the
trainer state's ``stateful_callbacks``) and restored on resume.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState

CLIP = 0.2  # OpenRLHF kl_controller.py:17
METRIC = "kl_coef"


class AdaptiveKLController:
    """``value`` moves the KL coefficient towards the one that keeps the measured KL at ``target``."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        if init_kl_coef <= 0 or target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL needs beta > 0, kl_target > 0 and kl_horizon > 0")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current: float, n_steps: int) -> float:
        """One update after ``n_steps`` samples with mean KL ``current``; returns the new value."""
        proportional_error = min(max(current / self.target - 1.0, -CLIP), CLIP)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
        return self.value


class AdaptiveKLCallback(TrainerCallback, ExportableState):
    """Drive a `GRPOTrainer`'s ``beta`` with `AdaptiveKLController`, once per rollout (see the module)."""

    def __init__(
        self, init_kl_coef: float, target: float, horizon: int, samples_per_rollout: int, updates_per_rollout: int
    ) -> None:
        self.controller = AdaptiveKLController(init_kl_coef, target, horizon)
        self.init_kl_coef = init_kl_coef
        self.samples_per_rollout = samples_per_rollout
        self.updates_per_rollout = max(1, updates_per_rollout)
        self.trainer: Any = None
        self._seen = 0  # entries of the trainer's "kl" metric list already collected
        self._rollout_kl: list[float] = []

    def bind(self, trainer: Any) -> AdaptiveKLCallback:
        """Attach to the trainer whose ``beta`` this callback sets."""
        self.trainer = trainer
        trainer.beta = self.controller.value
        return self

    def state(self) -> dict[str, Any]:
        return {
            "args": {
                "init_kl_coef": self.init_kl_coef,
                "target": self.controller.target,
                "horizon": self.controller.horizon,
                "samples_per_rollout": self.samples_per_rollout,
                "updates_per_rollout": self.updates_per_rollout,
            },
            "attributes": {"value": self.controller.value, "rollout_kl": list(self._rollout_kl)},
        }

    def _metrics(self) -> dict[str, list[float]]:
        return self.trainer._metrics["train"]  # TRL's per-mode metric lists, averaged and cleared at each log

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        stored: Any = state.stateful_callbacks or {}  # a dict of states once loaded from a checkpoint
        saved = stored.get(type(self).__name__) if isinstance(stored, dict) else None
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if saved:  # resumed from a checkpoint: continue with the coefficient it had reached
            attributes = saved.get("attributes", {})
            self.controller.value = float(attributes.get("value", self.controller.value))
            self._rollout_kl = [float(x) for x in attributes.get("rollout_kl", [])]
        if self.trainer is not None:
            self.trainer.beta = self.controller.value
        return control

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.trainer is None:
            return control
        metrics = self._metrics()
        kl = metrics.get("kl", [])
        self._rollout_kl.extend(float(x) for x in kl[self._seen :])
        self._seen = len(kl)
        metrics.setdefault(METRIC, []).append(float(self.trainer.beta))  # the value this step trained with
        if state.global_step % self.updates_per_rollout == 0 and self._rollout_kl:
            mean_kl = sum(self._rollout_kl) / len(self._rollout_kl)
            self.trainer.beta = self.controller.update(mean_kl, self.samples_per_rollout)
            self._rollout_kl = []
        return control

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._seen = 0  # TRL clears its metric lists right after logging them
        return control
