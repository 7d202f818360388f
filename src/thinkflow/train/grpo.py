"""GRPO on the ``rl`` split with the mixed reward, on TRL's `GRPOTrainer` — ``thinkflow grpo``.

Defaults are the paper's recipe (VLAA-Thinker, arXiv 2504.11468): 4 generations per prompt at
temperature 0.8, a rollout batch of 512 prompts and a train batch of 256 samples, one epoch over the RL
split, KL coefficient (``beta``) 1e-3 against the frozen initial policy, a cosine learning-rate schedule,
the paper's system prompt (part of every prompt the data loader builds), and
``thinkflow.rewards.mixed_reward``. The 3B/7B presets add the paper's better settings ("KL2": an adaptive
KL coefficient 1e-3 with target 5e-4, see `thinkflow.train.kl`; "LR2": ``cosine_with_min_lr`` down to 5e-7
after 3 % warmup) and ``loss_type: grpo`` (per-sample token mean, then the group mean). Every other TRL
option stays reachable: the common ones are keys here (``loss_type``, ``epsilon``, ``scale_rewards``,
``num_iterations``, ``mask_truncated_completions``, …), anything else goes through ``trl_args``.

Paper batches → TRL settings
----------------------------
The paper trained on OpenRLHF, whose rollout batch counts *prompts* and whose train batch counts
*samples* (completions): a rollout generates ``rollout_batch_size × n_samples_per_prompt`` samples
(OpenRLHF ``openrlhf/trainer/ppo_utils/samples_generator.py:100`` at commit 3c3be62, and the KL
controller's ``n_steps`` at ``openrlhf/trainer/ppo_trainer.py:253``), and ``train_batch_size`` is the
DeepSpeed global batch of one optimizer step, split into ``train_batch_size / micro_batch_size / world``
accumulation steps (``openrlhf/utils/deepspeed/deepspeed.py:110-115``, ``:456``). TRL counts completions
throughout. For ``G`` generations, ``N`` processes (GPUs) and a per-device micro-batch of ``b`` completions:

====================================  ===========================================  =====================
paper (OpenRLHF units)                TRL                                          8 GPUs, b = 8, G = 4
====================================  ===========================================  =====================
rollout batch (prompts per rollout)   ``generation_batch_size = rollout × G``      512 × 4 = 2048
train batch (samples per update)      ``b × N × gradient_accumulation_steps``      8 × 8 × 4 = 256
updates per rollout                   ``steps_per_generation / grad_accum``        32 / 4 = 8
                                      ``= rollout × G / train``
====================================  ===========================================  =====================

so ``gradient_accumulation_steps = train / (b × N)`` and ``steps_per_generation = rollout × G / (b × N)``
(``generation_batch_size`` then follows; TRL takes one of the two). Each rollout of 512 prompts (2048
samples) gives eight optimizer steps of 256 samples; the later ones use completions sampled by an older
policy, so TRL keeps their old log-probabilities and the clipped importance ratio corrects for it (as
OpenRLHF's PPO epochs over its replay buffer do). ``num_iterations = 1``: each rollout is used once.
`batch_plan` computes these and names the key to change when the numbers do not divide (e.g. 1 GPU, b = 8:
``gradient_accumulation_steps = 32``, ``steps_per_generation = 256``; 16 GPUs, b = 4: 4 and 32).

Rollouts: vLLM when available (``rollout_engine: auto`` picks colocated vLLM on a GPU with vLLM installed,
or the server at ``vllm_server_url``), HF ``generate`` otherwise.

Rewards: ``reward_funcs: [mixed]`` (the default) is `thinkflow.rewards.MixedReward` configured by the
``reward`` section (`thinkflow.rewards.RewardConfig`); the dataset's verifier types are checked against it
before training (an ``open`` record without a reward model fails here, not mid-run). The open-ended reward
model is either called through its endpoint (``reward.scorer: http``, ``reward.scorer_url``) or loaded in
process (``reward.scorer: logprob``); in process on a GPU it is kept on the CPU and moved to the GPU only
while a batch is scored (``reward_offload``), so it does not hold GPU memory during generation and the
update. Other entries of ``reward_funcs`` are import paths (``package.module:function``) of TRL reward
functions, called with ``reward_kwargs``.

``dynamic_sampling: true`` drops groups whose rewards are all equal and refills the batch from further
prompts (DAPO), see `thinkflow.train.dynamic_sampling`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from thinkflow.config import StageResult
from thinkflow.rewards.config import RewardConfig, default_scorer_model
from thinkflow.train.config import TrainError, TrainStageConfig
from thinkflow.train.inputs import load_dataset_split, load_model, load_processor, peft_config
from thinkflow.train.settings import common_trl_values, cuda_available, import_object, trl_config, world_size
from thinkflow.train.stage import Prepared, run_stage

STAGE = "grpo"
REQUIRED_COLUMNS = ["prompt", "image", "solution", "verifier_type"]
OPTIONAL_COLUMNS = ["id", "question"]  # the open-ended reward scores (image, question, answer)
MIXED = "mixed"  # reward_funcs entry for the configured mixed reward


class GRPOStageConfig(TrainStageConfig):
    """Keys of ``thinkflow grpo``; see `TrainStageConfig` for the shared ones and the module for batches."""

    split: str = Field(default="rl", description="Split of the dataset to train on.")
    learning_rate: float = Field(default=1e-6, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(default=1e-2, ge=0.0, description="AdamW weight decay.")
    # Batches (paper units: prompts) and the per-device micro-batch (completions); see `batch_plan`.
    num_generations: int = Field(default=4, ge=2, description="Completions sampled per prompt (the GRPO group).")
    rollout_batch_size: int = Field(
        default=512, gt=0, description="Prompts per rollout (OpenRLHF's rollout_batch_size)."
    )
    train_batch_size: int = Field(
        default=256, gt=0, description="Samples (completions) per optimizer step (OpenRLHF's train_batch_size)."
    )
    per_device_train_batch_size: int = Field(default=8, gt=0, description="Completions per device per micro-step.")
    temperature: float = Field(default=0.8, gt=0, description="Sampling temperature of the rollouts.")
    top_p: float = Field(default=1.0, gt=0, le=1.0, description="Nucleus sampling of the rollouts (1: off).")
    top_k: int = Field(default=0, ge=0, description="Top-k sampling of the rollouts (0: off).")
    max_completion_length: int = Field(default=1024, gt=0, description="Longest completion sampled, in tokens.")
    beta: float = Field(
        default=1e-3, ge=0.0, description="KL coefficient (the initial one when kl_target is set); 0: no reference."
    )
    kl_target: float | None = Field(
        default=None,
        gt=0,
        description="Adaptive KL (OpenRLHF's AdaptiveKLController, the paper's KL2) toward this KL; see train.kl.",
    )
    kl_horizon: int = Field(
        default=10000, gt=0, description="Adaptive KL horizon in samples (OpenRLHF's --kl_horizon default)."
    )
    loss_type: str = Field(
        default="dapo",
        description="TRL loss type: dapo = token mean over the accumulated batch; the paper presets use grpo.",
    )
    epsilon: float = Field(default=0.2, gt=0, description="PPO clip range (lower side).")
    epsilon_high: float | None = Field(default=None, description="Upper clip range (DAPO clip-higher); None: epsilon.")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        default="group", description="Normalize advantages by the reward std of the group, the batch, or not at all."
    )
    num_iterations: int = Field(default=1, gt=0, description="Optimizer passes over each rollout (GRPO's mu).")
    mask_truncated_completions: bool = Field(
        default=False, description="Leave completions cut at max_completion_length out of the loss."
    )
    reward_funcs: list[str] = Field(
        default_factory=lambda: [MIXED],
        min_length=1,
        description='Reward functions: "mixed" (the configured mixed reward) and/or "package.module:function".',
    )
    reward: RewardConfig = Field(
        default_factory=RewardConfig, description="The mixed reward's settings (scorer_model defaults to model)."
    )
    reward_weights: list[float] | None = Field(default=None, description="One weight per reward function; None: all 1.")
    reward_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to imported reward functions."
    )
    reward_offload: bool = Field(
        default=True, description="Keep an in-process reward model on the CPU except while scoring (GPU only)."
    )

    @model_validator(mode="before")
    @classmethod
    def _scorer_defaults_to_model(cls, data: Any) -> Any:
        return default_scorer_model(data, "reward")

    rollout_engine: Literal["auto", "hf", "vllm"] = Field(
        default="auto",
        description="Rollouts by hf (transformers), vllm, or auto (vLLM when installed and on a GPU or a server).",
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        default="colocate", description="vLLM in the training process, or a separate `trl vllm-serve` server."
    )
    vllm_server_url: str | None = Field(default=None, description="URL of the vLLM server (vllm_mode: server).")
    vllm_gpu_memory_utilization: float = Field(
        default=0.3, gt=0, le=1.0, description="Share of GPU memory a colocated vLLM may take."
    )
    vllm_tensor_parallel_size: int = Field(default=1, gt=0, description="vLLM tensor-parallel size.")
    dynamic_sampling: bool = Field(
        default=False, description="DAPO dynamic sampling: drop zero-variance groups and sample again."
    )
    dynamic_sampling_max_rounds: int = Field(
        default=4, gt=0, description="Sampling rounds at most per rollout under dynamic sampling."
    )
    log_completions: bool = Field(
        default=False, description="TRL's log_completions: log a sample of completions at each logging step."
    )

    @model_validator(mode="after")
    def _check_kl(self) -> GRPOStageConfig:
        if self.kl_target is not None and self.beta <= 0:
            raise ValueError("kl_target (adaptive KL) needs beta > 0: beta is the initial KL coefficient")
        return self


@dataclass(frozen=True)
class BatchPlan:
    """The paper's prompt batches as TRL settings for one world size (see the module docstring)."""

    world_size: int
    per_device_train_batch_size: int  # completions per device per micro-step
    gradient_accumulation_steps: int
    steps_per_generation: int
    generation_batch_size: int  # completions per rollout
    updates_per_rollout: int


def batch_plan(
    rollout_batch_size: int,
    train_batch_size: int,
    num_generations: int,
    per_device_train_batch_size: int,
    world_size: int,
) -> BatchPlan:
    """Map a rollout batch in prompts and a train batch in samples onto TRL's per-device batch, accumulation
    and generation steps (OpenRLHF's units, see the module docstring)."""
    rollout_samples = rollout_batch_size * num_generations
    if rollout_samples % train_batch_size:
        raise TrainError(
            f"rollout_batch_size × num_generations = {rollout_samples} samples per rollout must be a multiple of "
            f"train_batch_size ({train_batch_size} samples per optimizer step); change train_batch_size"
        )
    micro = per_device_train_batch_size * world_size
    if train_batch_size % micro:
        raise TrainError(
            f"train_batch_size = {train_batch_size} samples per optimizer step is not divisible by "
            f"per_device_train_batch_size × world size = {per_device_train_batch_size} × {world_size}; "
            "change per_device_train_batch_size or train_batch_size"
        )
    accumulation = train_batch_size // micro
    updates = rollout_samples // train_batch_size
    return BatchPlan(
        world_size=world_size,
        per_device_train_batch_size=per_device_train_batch_size,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation * updates,
        generation_batch_size=rollout_samples,
        updates_per_rollout=updates,
    )


def rollout_settings(cfg: GRPOStageConfig) -> dict[str, Any]:
    """TRL's generation backend settings: vLLM (colocated or a server) when asked or available, else HF."""
    engine = cfg.rollout_engine
    has_vllm = importlib.util.find_spec("vllm") is not None
    if engine == "auto":
        wants_server = cfg.vllm_mode == "server" and bool(cfg.vllm_server_url)
        engine = "vllm" if has_vllm and (cuda_available() or wants_server) else "hf"
    if engine == "hf":
        return {"use_vllm": False}
    if not has_vllm:
        raise TrainError("rollout_engine=vllm: the vllm package is not installed (use the trainer image)")
    if cfg.vllm_mode == "server":
        if not cfg.vllm_server_url:
            raise TrainError("vllm_mode=server needs vllm_server_url (e.g. http://vllm:8000)")
        return {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": cfg.vllm_server_url}
    if not cuda_available():
        raise TrainError("vllm_mode=colocate needs a GPU; use rollout_engine=hf on CPU")
    return {
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
        "vllm_tensor_parallel_size": cfg.vllm_tensor_parallel_size,
        "vllm_max_model_length": None,
    }


def trl_args(cfg: GRPOStageConfig, output_dir: Path, plan: BatchPlan) -> Any:
    """The TRL `GRPOConfig` for ``cfg`` and a batch plan (the ``trl_args`` passthrough applied last)."""
    from trl import GRPOConfig

    values = common_trl_values(cfg, output_dir)
    values.update(
        per_device_train_batch_size=plan.per_device_train_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        steps_per_generation=plan.steps_per_generation,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        scale_rewards=cfg.scale_rewards,
        num_iterations=cfg.num_iterations,
        mask_truncated_completions=cfg.mask_truncated_completions,
        reward_weights=cfg.reward_weights,
        log_completions=cfg.log_completions,
        shuffle_dataset=True,
        **rollout_settings(cfg),
    )
    return trl_config(GRPOConfig, values, cfg.trl_args)


class OffloadedReward:
    """A reward function whose in-process reward model lives on the CPU except while it scores a batch."""

    def __init__(self, reward: Any, model: Any, device: Any) -> None:
        self.reward = reward
        self.model = model
        self.device = device
        self.__name__ = getattr(reward, "__name__", type(reward).__name__)  # TRL names reward functions by it

    def __call__(self, *args: Any, **kwargs: Any) -> list[float]:
        if "open" not in set(kwargs.get("verifier_type") or []):
            return list(self.reward(*args, **kwargs))
        import torch

        self.model.to(self.device)
        try:
            return list(self.reward(*args, **kwargs))
        finally:
            self.model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def mixed_reward_function(cfg: GRPOStageConfig) -> Any:
    """`MixedReward` for ``cfg.reward``; an in-process reward model is offloaded between batches on GPU."""
    from thinkflow.rewards import LogProbScorer, MixedReward

    if cfg.reward.scorer == "logprob" and cfg.reward_offload and cuda_available():
        import torch

        assert cfg.reward.scorer_model is not None  # RewardConfig checks it
        scorer = LogProbScorer.from_pretrained(
            cfg.reward.scorer_model,
            device="cpu",
            batch_size=cfg.reward.scorer_batch_size,
            image_root=cfg.reward.image_root,
        )
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return OffloadedReward(MixedReward(cfg.reward, scorer=scorer), scorer.model, device)
    return MixedReward(cfg.reward)


def reward_functions(cfg: GRPOStageConfig) -> list[Callable[..., Any]]:
    """The configured reward functions: ``mixed`` built from ``cfg.reward``, others imported."""
    funcs: list[Callable[..., Any]] = []
    for spec in cfg.reward_funcs:
        if spec == MIXED:
            funcs.append(mixed_reward_function(cfg))
            continue
        func = import_object(spec)
        if not callable(func):
            raise TrainError(f"reward_funcs: {spec!r} is not callable")
        funcs.append(functools.partial(func, **cfg.reward_kwargs) if cfg.reward_kwargs else func)
    return funcs


def check_rewards(funcs: list[Callable[..., Any]], dataset: Any, cfg: GRPOStageConfig) -> None:
    """Fail before training when a mixed reward cannot score the dataset (unknown types, ``open`` without a model)."""
    from thinkflow.rewards import MixedReward

    for func in funcs:
        inner = func.reward if isinstance(func, OffloadedReward) else func
        if isinstance(inner, MixedReward):
            try:
                inner.check(dataset["verifier_type"], where=f"data {cfg.data} split {cfg.split!r}")
            except ValueError as exc:
                raise TrainError(str(exc)) from None


def build_trainer(
    cfg: GRPOStageConfig,
    model_dir: Path,
    checkpoint_root: Path,
    callbacks: list[Any],
    *,
    reward_funcs: list[Callable[..., Any]] | None = None,
) -> Prepared:
    """A `ThinkFlowGRPOTrainer` for ``cfg`` on the model at ``model_dir``, checkpointing under ``checkpoint_root``."""
    from thinkflow.train.dynamic_sampling import ThinkFlowGRPOTrainer

    size = world_size()
    plan = batch_plan(
        cfg.rollout_batch_size, cfg.train_batch_size, cfg.num_generations, cfg.per_device_train_batch_size, size
    )
    if cfg.dynamic_sampling and cfg.rollout_batch_size % size:
        raise TrainError(
            f"dynamic_sampling: rollout_batch_size ({cfg.rollout_batch_size}) must be divisible by the number of "
            f"processes ({size}) so that no prompt group straddles two processes"
        )
    funcs = reward_funcs if reward_funcs is not None else reward_functions(cfg)
    if cfg.reward_weights is not None and len(cfg.reward_weights) != len(funcs):
        raise TrainError(f"reward_weights has {len(cfg.reward_weights)} entries for {len(funcs)} reward functions")
    args = trl_args(cfg, checkpoint_root, plan)  # before the model: DeepSpeed ZeRO-3 must see its config first
    processor = load_processor(model_dir, cfg, padding_side="left")
    model = load_model(model_dir, cfg)
    dataset = load_dataset_split(cfg, REQUIRED_COLUMNS, optional=OPTIONAL_COLUMNS)
    check_rewards(funcs, dataset, cfg)
    if len(dataset) < cfg.rollout_batch_size:
        raise TrainError(
            f"data {cfg.data}: split {cfg.split!r} has {len(dataset)} prompts, fewer than one rollout batch "
            f"(rollout_batch_size={cfg.rollout_batch_size}); lower rollout_batch_size and train_batch_size"
        )
    trainer = ThinkFlowGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config(cfg),
        callbacks=callbacks,
        dynamic_sampling=cfg.dynamic_sampling,
        dynamic_sampling_max_rounds=cfg.dynamic_sampling_max_rounds,
    )
    if cfg.kl_target is not None:
        from thinkflow.train.kl import AdaptiveKLCallback

        kl_callback = AdaptiveKLCallback(
            cfg.beta, cfg.kl_target, cfg.kl_horizon, plan.generation_batch_size, plan.updates_per_rollout
        )
        trainer.add_callback(kl_callback.bind(trainer))
    extra = {"batch_plan": asdict(plan), "reward_funcs": list(trainer.reward_func_names)}
    return Prepared(
        trainer=trainer, processor=processor, num_examples=len(dataset), merge_lora=cfg.lora.merge, extra_lineage=extra
    )


def run(cfg: GRPOStageConfig, *, reward_funcs: list[Callable[..., Any]] | None = None) -> StageResult:
    """Train ``cfg.model`` with GRPO on the ``rl`` split of ``cfg.data``; the result's output is the model dir.

    ``reward_funcs`` (Python callers only) replaces the configured reward functions with callables.
    """
    prepare = functools.partial(build_trainer, reward_funcs=reward_funcs)
    return run_stage(STAGE, cfg, prepare)  # type: ignore[arg-type]
