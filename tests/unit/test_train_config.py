"""Training configs: presets, the paper's batch mapping onto TRL, TRL arguments, DeepSpeed configs."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from thinkflow.config import ConfigError, load_config
from thinkflow.train.config import TrainError
from thinkflow.train.grpo import GRPOStageConfig, batch_plan
from thinkflow.train.grpo import trl_args as grpo_trl_args
from thinkflow.train.settings import deepspeed_config_path
from thinkflow.train.sft import SFTConfig
from thinkflow.train.sft import trl_args as sft_trl_args

PRESETS = {
    "tiny-sft": SFTConfig,
    "tiny-grpo": GRPOStageConfig,
    "qwen2.5-vl-3b-sft": SFTConfig,
    "qwen2.5-vl-3b-grpo": GRPOStageConfig,
    "qwen2.5-vl-7b-grpo": GRPOStageConfig,
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_load(name: str) -> None:
    cfg = load_config(PRESETS[name], name)
    assert cfg.model and cfg.data and cfg.output_dir


def test_grpo_defaults_are_the_papers() -> None:
    cfg = GRPOStageConfig(model="m", data="d", output_dir="o")
    assert (cfg.num_generations, cfg.temperature, cfg.beta) == (4, 0.8, 1e-3)
    assert (cfg.rollout_batch_size, cfg.train_batch_size) == (512, 256)
    assert cfg.lr_scheduler_type == "cosine" and cfg.num_train_epochs == 1.0 and cfg.max_steps == -1
    assert cfg.split == "rl" and cfg.reward_funcs == ["mixed"] and cfg.freeze_vision_tower


def test_qwen_presets_keep_paper_batches() -> None:
    for name in ("qwen2.5-vl-3b-grpo", "qwen2.5-vl-7b-grpo"):
        cfg = load_config(GRPOStageConfig, name)
        assert (cfg.rollout_batch_size, cfg.train_batch_size, cfg.num_generations) == (512, 256, 4)
        assert cfg.beta == 1e-3 and cfg.temperature == 0.8
        # the paper's better settings: KL2 (adaptive 1e-3 -> 5e-4), LR2 (cosine, min LR 5e-7, 3 % warmup)
        assert cfg.kl_target == 5e-4 and cfg.loss_type == "grpo"
        assert cfg.lr_scheduler_type == "cosine_with_min_lr" and cfg.lr_scheduler_kwargs == {"min_lr": 5e-7}
        assert cfg.warmup_ratio == 0.03 and cfg.reward.scorer == "http"


def test_paper_schedule_reaches_transformers(tmp_path: Path) -> None:
    """cosine_with_min_lr + min_lr + warmup ratio go to TRL, and transformers builds that schedule from them."""
    import torch
    from transformers.optimization import get_scheduler

    cfg = load_config(GRPOStageConfig, "qwen2.5-vl-3b-grpo", ["deepspeed=null", "rollout_engine=hf"])
    args = grpo_trl_args(cfg, tmp_path, batch_plan(512, 256, 4, 8, 8))
    assert args.lr_scheduler_type == "cosine_with_min_lr" and args.lr_scheduler_kwargs == {"min_lr": 5e-7}
    assert args.loss_type == "grpo" and args.beta == 1e-3
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.learning_rate)
    sched = get_scheduler(
        args.lr_scheduler_type, opt, num_warmup_steps=args.get_warmup_steps(100), num_training_steps=100,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )  # fmt: skip
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[3] == pytest.approx(1e-6)  # 3 warmup steps of 100
    assert min(lrs[3:]) >= 5e-7 - 1e-12 and lrs[-1] == pytest.approx(5e-7, rel=0.01)


@pytest.mark.parametrize(
    ("world", "per_device", "accumulation", "steps_per_generation"),
    [(1, 8, 32, 256), (8, 8, 4, 32), (16, 4, 4, 32), (32, 8, 1, 8)],
)
def test_batch_plan_maps_paper_batches(
    world: int, per_device: int, accumulation: int, steps_per_generation: int
) -> None:
    """OpenRLHF's units: rollout batch in prompts (samples_generator.py:100 makes rollout × n_samples_per_prompt
    samples), train batch in samples (deepspeed.py:110-115: accumulation = train / micro / world)."""
    plan = batch_plan(512, 256, 4, per_device, world)
    assert plan.gradient_accumulation_steps == accumulation
    assert plan.steps_per_generation == steps_per_generation
    assert plan.generation_batch_size == 2048  # 512 prompts x 4 completions
    assert plan.updates_per_rollout == 8  # 2048 samples / 256 samples per optimizer step
    # one optimizer step sees train_batch_size samples across all processes
    assert per_device * world * plan.gradient_accumulation_steps == 256
    assert per_device * world * plan.steps_per_generation == 512 * 4


def test_batch_plan_errors_name_the_keys() -> None:
    with pytest.raises(TrainError, match="per_device_train_batch_size"):
        batch_plan(512, 256, 4, 3, 8)
    with pytest.raises(TrainError, match=r"rollout_batch_size × num_generations .* train_batch_size"):
        batch_plan(500, 384, 4, 8, 1)


def test_grpo_trl_args_follow_the_plan(tmp_path: Path) -> None:
    batches = ["num_generations=4", "rollout_batch_size=4", "train_batch_size=8", "beta=1e-3", "temperature=0.8"]
    cfg = load_config(GRPOStageConfig, "tiny-grpo", [*batches, "trl_args={log_completions: true, epsilon_high: 0.28}"])
    plan = batch_plan(cfg.rollout_batch_size, cfg.train_batch_size, cfg.num_generations, 4, 1)
    args = grpo_trl_args(cfg, tmp_path, plan)
    assert args.generation_batch_size == 16 and args.steps_per_generation == 4
    assert args.gradient_accumulation_steps == 2 and args.per_device_train_batch_size == 4
    assert args.num_generations == 4 and args.beta == 1e-3 and args.temperature == 0.8
    assert args.bf16 is False and args.use_cpu is True  # CPU: never TRL's bf16 default
    assert args.use_vllm is False and args.report_to == []
    assert args.log_completions is True and args.epsilon_high == 0.28  # trl_args passthrough wins
    assert args.output_dir == str(tmp_path)


def test_trl_args_unknown_key_is_named(tmp_path: Path) -> None:
    cfg = load_config(GRPOStageConfig, "tiny-grpo", ["trl_args={not_an_option: 1}"])
    plan = batch_plan(4, 8, 4, 4, 1)
    with pytest.raises(TrainError, match="not_an_option"):
        grpo_trl_args(cfg, tmp_path, plan)


def test_sft_trl_args(tmp_path: Path) -> None:
    cfg = load_config(SFTConfig, "tiny-sft", ["lr_scheduler_type=linear"])
    args = sft_trl_args(cfg, tmp_path)
    assert args.completion_only_loss is True and args.max_length == 1024
    assert args.lr_scheduler_type == "linear" and args.remove_unused_columns is False
    assert args.bf16 is False and args.gradient_checkpointing is False


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="num_generations"):
        load_config(GRPOStageConfig, "tiny-grpo", ["num_generations=1"])
    with pytest.raises(ConfigError, match="deepspeed"):
        load_config(GRPOStageConfig, "tiny-grpo", ["deepspeed=zero9"])
    with pytest.raises(ConfigError, match=r"launch\.mode"):
        load_config(SFTConfig, "tiny-sft", ["launch.mode=slurm"])
    with pytest.raises(ConfigError, match=r"reward\.scorer"):
        load_config(GRPOStageConfig, "tiny-grpo", ["reward.scorer=magic"])


@pytest.mark.parametrize("stage", [2, 3])
def test_shipped_deepspeed_configs_resolve_with_hf(stage: int, tiny_model: Path, tmp_path: Path) -> None:
    """Every "auto" in the shipped ZeRO configs is filled by transformers from the training arguments + model."""
    from transformers import AutoModelForImageTextToText, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    model = AutoModelForImageTextToText.from_pretrained(tiny_model)  # before a ZeRO-3 config is registered

    path = deepspeed_config_path(f"zero{stage}")
    assert path is not None and Path(path).is_file()
    raw = json.loads(Path(path).read_text())
    assert raw["zero_optimization"]["stage"] == stage
    assert resources.files("thinkflow.train").joinpath("deepspeed", f"zero{stage}.json").is_file()  # package data
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2, report_to="none")
    hf = HfTrainerDeepSpeedConfig(path)
    try:
        hf.trainer_config_process(args)
        hf.trainer_config_finalize(args, model, num_training_steps=10)
    finally:
        unset_hf_deepspeed_config()
    assert "auto" not in json.dumps(hf.config)
    assert hf.config["train_micro_batch_size_per_gpu"] == 2 and hf.is_zero3() == (stage == 3)


def test_deepspeed_path_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="not found"):
        deepspeed_config_path(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(TrainError, match="not valid JSON"):
        deepspeed_config_path(str(bad))
