"""The adaptive KL controller (the paper's "KL2") and the callback that drives TRL's ``beta`` with it.

The update is OpenRLHF's ``AdaptiveKLController.update`` (openrlhf/trainer/ppo_utils/kl_controller.py:15-19,
commit 3c3be6234e0cb353e76bb8019947db9dfe99fca7), called once per rollout with
``n_steps = rollout_batch_size * n_samples_per_prompt`` (openrlhf/trainer/ppo_trainer.py:253).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from transformers import TrainerControl, TrainerState

from thinkflow.config import ConfigError, load_config
from thinkflow.train.grpo import GRPOStageConfig
from thinkflow.train.kl import AdaptiveKLCallback, AdaptiveKLController


def openrlhf_update(value: float, target: float, horizon: int, current: float, n_steps: int) -> float:
    """OpenRLHF's formula, written out with numpy as in kl_controller.py:17-19."""
    proportional_error = np.clip(current / target - 1, -0.2, 0.2)
    mult = 1 + proportional_error * n_steps / horizon
    return float(value * mult)


@pytest.mark.parametrize("current", [0.0, 1e-4, 4.9e-4, 5e-4, 5.5e-4, 1e-3, 0.5])
def test_update_matches_openrlhf(current: float) -> None:
    ctl = AdaptiveKLController(1e-3, 5e-4, 10000)
    expected = 1e-3
    for _ in range(5):
        expected = openrlhf_update(expected, 5e-4, 10000, current, 2048)
        ctl.update(current, 2048)
    assert ctl.value == pytest.approx(expected, rel=1e-12)


def test_update_direction_and_clip() -> None:
    ctl = AdaptiveKLController(1e-3, 5e-4, 10000)
    assert ctl.update(1e-3, 2048) == pytest.approx(1e-3 * (1 + 0.2 * 2048 / 10000))  # KL 2x target: +clip
    ctl = AdaptiveKLController(1e-3, 5e-4, 10000)
    assert ctl.update(4e-4, 2048) == pytest.approx(1e-3 * (1 - 0.2 * 2048 / 10000))  # below target: down
    with pytest.raises(ValueError, match="beta > 0"):
        AdaptiveKLController(0.0, 5e-4, 10000)


class FakeTrainer:
    """The two attributes of TRL's GRPOTrainer the callback touches: ``beta`` and ``_metrics``."""

    def __init__(self) -> None:
        self.beta = 0.0
        self._metrics: dict[str, dict[str, list[float]]] = {"train": {}}

    def micro_steps(self, *kls: float) -> None:
        self._metrics["train"].setdefault("kl", []).extend(kls)

    def log(self, callback: AdaptiveKLCallback, state: TrainerState) -> dict[str, float]:
        logs = {k: sum(v) / len(v) for k, v in self._metrics["train"].items()}
        callback.on_log(SimpleNamespace(), state, TrainerControl(), logs=logs)  # type: ignore[arg-type]
        self._metrics["train"].clear()
        return logs


def test_callback_updates_beta_once_per_rollout_and_logs_kl_coef() -> None:
    trainer = FakeTrainer()
    cb = AdaptiveKLCallback(1e-3, 5e-4, 10000, samples_per_rollout=2048, updates_per_rollout=2).bind(trainer)
    state, args, control = TrainerState(), SimpleNamespace(), TrainerControl()
    cb.on_train_begin(args, state, control)  # type: ignore[arg-type]
    assert trainer.beta == 1e-3
    expected = 1e-3
    kls = [(1e-3, 1.2e-3), (8e-4, 1e-3), (2e-4, 3e-4), (4e-4, 2e-4)]
    for step, pair in enumerate(kls, start=1):
        trainer.micro_steps(*pair)  # two accumulation micro-steps per optimizer step
        state.global_step = step
        cb.on_step_end(args, state, control)  # type: ignore[arg-type]
        logs = trainer.log(cb, state)  # logging_steps = 1
        assert logs["kl_coef"] == pytest.approx(expected)  # the coefficient this step trained with
        if step % 2 == 0:  # end of a rollout: OpenRLHF's update with the rollout's mean KL
            rollout = [x for p in kls[step - 2 : step] for x in p]
            expected = openrlhf_update(expected, 5e-4, 10000, sum(rollout) / len(rollout), 2048)
        assert trainer.beta == pytest.approx(expected)
    assert cb.state()["attributes"]["value"] == pytest.approx(expected)


def test_callback_restores_the_coefficient_on_resume() -> None:
    trainer = FakeTrainer()
    cb = AdaptiveKLCallback(1e-3, 5e-4, 10000, samples_per_rollout=16, updates_per_rollout=2).bind(trainer)
    state = TrainerState(stateful_callbacks={"AdaptiveKLCallback": {"args": {}, "attributes": {"value": 7e-4}}})
    cb.on_train_begin(SimpleNamespace(), state, TrainerControl())  # type: ignore[arg-type]
    assert trainer.beta == 7e-4 and cb.controller.value == 7e-4


def test_kl_target_needs_a_positive_initial_beta() -> None:
    with pytest.raises(ConfigError, match="kl_target"):
        load_config(GRPOStageConfig, "tiny-grpo", ["kl_target=5e-4", "beta=0"])
