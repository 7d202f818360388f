"""GRPO on the tiny model: the mixed reward, metrics, dynamic sampling, resume, and proof that it learns."""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch

from thinkflow.config import load_config
from thinkflow.train.config import TrainError
from thinkflow.train.grpo import (
    GRPOStageConfig,
    OffloadedReward,
    build_trainer,
    reward_functions,
    rollout_settings,
    run,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    from thinkflow.data.synthetic import generate

    out = tmp_path_factory.mktemp("grpo-data") / "data"
    generate(str(out), 48, seed=2)
    return str(out)


def _cfg(tiny_model: Path, data: str, out: Path, *sets: str) -> GRPOStageConfig:
    return load_config(
        GRPOStageConfig,
        "tiny-grpo",
        [
            f"model={tiny_model}",
            f"data={data}",
            f"output_dir={out}",
            f"reward.scorer_model={tiny_model}",
            "max_completion_length=16",
            "max_steps=2",
            # the batch and KL settings these tests pin (tiny-grpo itself is sized for the demo, issue 18)
            "num_generations=4",
            "train_batch_size=8",
            "per_device_train_batch_size=4",
            "beta=0.001",
            "save_steps=2",
            *sets,
        ],
    )


def _text(completion: Any) -> str:
    return completion[0]["content"] if isinstance(completion, list) else str(completion)


def digit_fraction(completions: list[Any], **kwargs: Any) -> list[float]:
    """A learnable reward with variance even for a random model: the share of digits in the completion."""
    return [sum(ch.isdigit() for ch in _text(c)) / max(1, len(_text(c))) for c in completions]


def _constant_prompt(row_id: str) -> bool:
    return zlib.crc32(row_id.encode()) % 2 == 0


class HalfConstant:
    """Reward 1 for every completion of "constant" prompts (zero variance), the digit share for the others."""

    __name__ = "half_constant"

    def __init__(self) -> None:
        self.scored: list[list[str]] = []

    def __call__(self, completions: list[Any], id: list[str], **kwargs: Any) -> list[float]:
        self.scored.append(list(id))
        share = digit_fraction(completions)
        return [1.0 if _constant_prompt(i) else s for i, s in zip(id, share, strict=True)]


def test_grpo_run_with_the_mixed_reward(tiny_model: Path, data: str, tmp_path: Path, mlflow_db: str) -> None:
    from mlflow import MlflowClient
    from transformers import AutoModelForImageTextToText

    out = tmp_path / "grpo"
    result = run(_cfg(tiny_model, data, out))
    assert result.stage == "grpo" and result.metrics["global_step"] == 2
    AutoModelForImageTextToText.from_pretrained(out)
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["reward_funcs"] == ["mixed_reward"] and lineage["dataset"]["split"] == "rl"
    assert lineage["batch_plan"] == {
        "world_size": 1,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "steps_per_generation": 4,
        "generation_batch_size": 16,
        "updates_per_rollout": 2,
    }
    metrics = set(MlflowClient().get_run(result.mlflow_run_id).data.metrics)
    required = {
        "loss",
        "kl",
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "mixed_reward/format_failure",
        "tokens_per_second",
        "step_seconds",
        "step_time",
        "learning_rate",
    }
    assert required <= metrics, required - metrics
    assert any(m.startswith("mixed_reward/") and m.endswith("/accuracy") for m in metrics)  # per verifier type


def test_rewards_are_checked_before_training(tiny_model: Path, data: str, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, data, tmp_path / "o", "reward.scorer=none")
    with pytest.raises(TrainError, match="verifier_type 'open'"):
        build_trainer(cfg, tiny_model, tmp_path / "c", [])


def test_reward_functions_from_config(tiny_model: Path, data: str, tmp_path: Path) -> None:
    import functools

    from thinkflow.rewards import MixedReward

    cfg = _cfg(tiny_model, data, tmp_path / "o", "reward_funcs=[mixed, 'trl.rewards:think_format_reward']")
    mixed, think = reward_functions(cfg)
    assert isinstance(mixed, MixedReward) and mixed.config.scorer == "logprob"
    assert think.__name__ == "think_format_reward"
    cfg = _cfg(tiny_model, data, tmp_path / "o", "reward_funcs=['trl.rewards:get_soft_overlong_punishment']")
    cfg = cfg.model_copy(update={"reward_kwargs": {"max_completion_len": 16, "soft_punish_cache": 4}})
    (bound,) = reward_functions(cfg)
    assert isinstance(bound, functools.partial) and bound.keywords["soft_punish_cache"] == 4
    with pytest.raises(TrainError, match="no_such_module"):
        reward_functions(_cfg(tiny_model, data, tmp_path / "o", "reward_funcs=['no_such_module:f']"))


def test_offloaded_reward_moves_the_model_only_for_open_records() -> None:
    moves: list[str] = []

    class Recorder(torch.nn.Linear):
        def to(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            moves.append(str(args[0]))
            return self

    def reward(completions: list[Any], verifier_type: list[str], **kwargs: Any) -> list[float]:
        return [0.5] * len(completions)

    offloaded = OffloadedReward(reward, Recorder(1, 1), torch.device("cpu"))
    assert offloaded.__name__ == "reward"
    assert offloaded(completions=["a", "b"], verifier_type=["digit", "mcq"]) == [0.5, 0.5]
    assert moves == []
    assert offloaded(completions=["a", "b"], verifier_type=["digit", "open"]) == [0.5, 0.5]
    assert moves == ["cpu", "cpu"]  # to the training device, then back to the CPU


def test_rollout_engine_selection(tiny_model: Path, data: str, tmp_path: Path) -> None:
    assert rollout_settings(_cfg(tiny_model, data, tmp_path, "rollout_engine=auto")) == {"use_vllm": False}
    with pytest.raises(TrainError, match="vllm"):
        rollout_settings(_cfg(tiny_model, data, tmp_path, "rollout_engine=vllm"))


def test_dataset_smaller_than_a_rollout_is_an_error(tiny_model: Path, data: str, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, data, tmp_path / "o", "rollout_batch_size=512", "train_batch_size=256")
    with pytest.raises(TrainError, match="fewer than one rollout batch"):
        build_trainer(cfg, tiny_model, tmp_path / "c", [])


def _dynamic_trainer(tiny_model: Path, data: str, tmp_path: Path, reward: Any, *sets: str) -> Any:
    cfg = _cfg(
        tiny_model,
        data,
        tmp_path / "o",
        "dynamic_sampling=true",
        "rollout_batch_size=4",
        "train_batch_size=16",
        "per_device_train_batch_size=16",
        *sets,
    )
    trainer = build_trainer(cfg, tiny_model, tmp_path / "c", [], reward_funcs=[reward]).trainer
    trainer.model.train()
    return trainer


def _first_batch(trainer: Any, constant: int, variable: int) -> list[dict[str, Any]]:
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    pick = [r for r in rows if _constant_prompt(r["id"])][:constant] + [
        r for r in rows if not _constant_prompt(r["id"])
    ][:variable]
    return [dict(r) for r in pick for _ in range(trainer.num_generations)]


def test_dynamic_sampling_drops_zero_variance_groups_and_refills(tiny_model: Path, data: str, tmp_path: Path) -> None:
    reward = HalfConstant()
    trainer = _dynamic_trainer(tiny_model, data, tmp_path, reward)
    inputs = _first_batch(trainer, constant=2, variable=2)
    out = trainer._generate_and_score_completions(inputs)
    assert len(reward.scored) >= 2  # the first round, then refills
    assert out["prompt_ids"].shape[0] == out["completion_ids"].shape[0] == len(inputs) == 16
    groups = out["advantages"].view(-1, 4)
    assert (groups.abs().sum(dim=1) > 0).all()  # every delivered group has reward variance
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    assert out["pixel_values"].shape[0] == int(out["image_grid_thw"].prod(-1).sum())
    assert len(out["num_images"]) == 16 and out["mm_token_type_ids"].shape == (16, out["prompt_ids"].shape[1] + 16)
    image_token = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert torch.equal(out["mm_token_type_ids"][:, : out["prompt_ids"].shape[1]] == 1, out["prompt_ids"] == image_token)
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/kept_frac"] == [0.5]
    assert metrics["dynamic_sampling/rounds"][0] >= 2 and metrics["dynamic_sampling/filled_zero_std_frac"] == [0.0]


def test_dynamic_sampling_gives_up_after_max_rounds(
    tiny_model: Path, data: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def constant(completions: list[Any], **kwargs: Any) -> list[float]:
        return [1.0] * len(completions)

    trainer = _dynamic_trainer(tiny_model, data, tmp_path, constant, "dynamic_sampling_max_rounds=2")
    inputs = _first_batch(trainer, constant=2, variable=2)
    with caplog.at_level(logging.WARNING, logger="thinkflow.train"):
        out = trainer._generate_and_score_completions(inputs)
    assert out["prompt_ids"].shape[0] == 16 and torch.count_nonzero(out["advantages"]) == 0
    assert "4 of 4 groups still without reward variance after 2 rounds" in caplog.text
    assert trainer._metrics["train"]["dynamic_sampling/filled_zero_std_frac"] == [1.0]


def test_dynamic_sampling_trains(tiny_model: Path, data: str, tmp_path: Path, mlflow_db: str) -> None:
    from mlflow import MlflowClient

    cfg = _cfg(tiny_model, data, tmp_path / "o", "dynamic_sampling=true")
    result = run(cfg, reward_funcs=[HalfConstant()])
    assert result.metrics["global_step"] == 2
    metrics = MlflowClient().get_run(result.mlflow_run_id).data.metrics
    assert metrics["dynamic_sampling/rounds"] >= 1 and metrics["frac_reward_zero_std"] >= 0


def test_resume_after_a_crash_continues_from_the_checkpoint(
    tiny_model: Path, data: str, tmp_path: Path, mlflow_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Crash during step 3 (after checkpoint-2); the restart resumes there with the checkpoint's weights."""
    from mlflow import MlflowClient
    from transformers import AutoModelForImageTextToText

    calls: list[int] = []

    def crashing(completions: list[Any], **kwargs: Any) -> list[float]:
        calls.append(1)
        if len(calls) == 2:  # the second rollout starts step 3: the pod dies
            raise RuntimeError("node lost")
        return digit_fraction(completions)

    out = tmp_path / "grpo"
    cfg = _cfg(tiny_model, data, out, "max_steps=4", "save_steps=2", "learning_rate=0.01")
    with pytest.raises(RuntimeError, match="node lost"):
        run(cfg, reward_funcs=[crashing])
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").is_file() and not (out / "lineage.json").exists()

    # The checkpoint's weights are what a resumed trainer starts from (not the base weights).
    trainer = build_trainer(cfg, tiny_model, tmp_path / "probe", [], reward_funcs=[digit_fraction]).trainer
    trainer._load_from_checkpoint(str(checkpoint))
    saved = AutoModelForImageTextToText.from_pretrained(checkpoint)
    base = AutoModelForImageTextToText.from_pretrained(tiny_model)
    for (name, p), (_, q) in zip(trainer.model.named_parameters(), saved.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    assert any(not torch.equal(q, b) for q, b in zip(saved.parameters(), base.parameters(), strict=True))

    with caplog.at_level(logging.INFO, logger="thinkflow.train"):
        result = run(cfg, reward_funcs=[digit_fraction])
    assert f"resuming from {checkpoint} (global_step 2)" in caplog.text
    assert result.metrics["global_step"] == 4
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["resumed_from"] == str(checkpoint) and lineage["global_step"] == 4
    client = MlflowClient()
    assert [m.step for m in client.get_metric_history(result.mlflow_run_id, "loss")] == [3, 4]
    assert client.get_run(result.mlflow_run_id).data.tags["thinkflow.resumed_from"] == str(checkpoint)


@pytest.mark.slow
def test_grpo_learns_a_reward_with_variance(tiny_model: Path, data: str, tmp_path: Path, mlflow_db: str) -> None:
    """Fixed seed, tiny model, synthetic data: the mean reward of the last steps is clearly above the first."""
    from mlflow import MlflowClient

    cfg = _cfg(
        tiny_model,
        data,
        tmp_path / "learn",
        "max_steps=16",
        "num_generations=8",
        "rollout_batch_size=2",
        "train_batch_size=16",
        "per_device_train_batch_size=16",
        "learning_rate=0.02",
        "lr_scheduler_type=constant",
        "temperature=1.0",
        "beta=0",
        "save_steps=1000",
        "seed=0",
    )
    result = run(cfg, reward_funcs=[digit_fraction])
    history = sorted(MlflowClient().get_metric_history(result.mlflow_run_id, "reward"), key=lambda m: m.step)
    rewards = [m.value for m in history]
    assert len(rewards) == 16
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.15, rewards
