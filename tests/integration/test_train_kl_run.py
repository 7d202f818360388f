"""The adaptive KL controller (the paper's "KL2") in a real GRPO run: TRL's trainer with `AdaptiveKLCallback`.

The controller's formula and the callback alone are tested in tests/unit/test_train_kl.py (OpenRLHF's
``AdaptiveKLController.update``, openrlhf/trainer/ppo_utils/kl_controller.py:15-19, commit
3c3be6234e0cb353e76bb8019947db9dfe99fca7); this trains the tiny model, so it lives with the integration tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkflow.config import load_config
from thinkflow.train.grpo import GRPOStageConfig


def length_mod_3(completions: list[str], **_: object) -> list[float]:
    return [float(len(str(c)) % 3) for c in completions]


@pytest.mark.slow
def test_adaptive_kl_in_a_real_grpo_run(tiny_model: Path, tmp_path: Path, mlflow_db: str) -> None:
    """TRL's trainer with the callback: kl_coef is logged every step and moves after each rollout."""
    from mlflow import MlflowClient

    from thinkflow.data.synthetic import generate
    from thinkflow.train.grpo import run

    data = tmp_path / "data"
    generate(str(data), 40, seed=2)
    cfg = load_config(
        GRPOStageConfig,
        "tiny-grpo",
        [f"model={tiny_model}", f"data={data}", f"output_dir={tmp_path / 'out'}", "max_steps=4",
         "kl_target=1e-6", "kl_horizon=10", "beta=1e-3", "save_steps=1000"],
    )  # fmt: skip
    result = run(cfg, reward_funcs=[length_mod_3])
    history = sorted(MlflowClient().get_metric_history(result.mlflow_run_id, "kl_coef"), key=lambda m: m.step)
    assert [m.step for m in history] == [1, 2, 3, 4]
    values = [m.value for m in history]
    assert values[0] == pytest.approx(1e-3) and values[1] == pytest.approx(1e-3)  # rollout 1 trains with init
    assert values[2] != pytest.approx(1e-3)  # updated after rollout 1 (2 optimizer steps per rollout)
