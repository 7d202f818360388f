"""Zero-variance group filtering (DAPO's dynamic sampling) on top of TRL's `GRPOTrainer`.

A group whose completions all get the same reward (all right, all wrong, or all unscorable) has zero
advantage everywhere: it costs a forward/backward and teaches nothing. With ``dynamic_sampling`` on,
`ThinkFlowGRPOTrainer` drops such groups from each generation batch and refills the batch by generating
for further prompts, until the batch is full again — the batch size, the number of optimizer steps and
the loss normalisation stay exactly TRL's. Refill prompts are drawn from the training set by a seeded
shuffle that depends only on (seed, global_step, round), so every process draws consistently and a resumed
run draws the same prompts. After ``max_rounds`` generation rounds the remaining slots are filled with
zero-variance groups (they contribute no gradient) and a warning is logged; DAPO's own implementation
raises instead, which would stop a long run on one unlucky batch.

Built on two TRL hooks: `_calculate_rewards` (to keep the gathered per-completion rewards) and
`_generate_and_score_completions` (called once per round; the rounds' outputs are split into per-sample
rows, the kept groups re-padded into one batch). Groups must not straddle processes: each process's
generation batch (``per_device_train_batch_size × steps_per_generation``) must hold whole groups, which
`thinkflow.train.grpo` guarantees by requiring ``rollout_batch_size`` divisible by the world size.

Metrics (averaged per logging step): ``dynamic_sampling/rounds``, ``dynamic_sampling/kept_frac`` (share of
groups with reward variance in the first round), ``dynamic_sampling/filled_zero_std_frac`` (share of the
batch filled with zero-variance groups after the last round).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from trl import GRPOTrainer
from trl.trainer.utils import nanstd, pad, split_pixel_values_by_grid

from thinkflow.train.checkpoints import ResumeWeightsMixin

log = logging.getLogger("thinkflow.train")

# Per-sample tensors aligned with the prompt (left-padded) and their padding values (None: the pad token).
PROMPT_KEYS: dict[str, int | None] = {"prompt_ids": None, "prompt_mask": 0}
# Tensors spanning prompt + completion: split at the prompt width and padded on each side.
SPANNING_KEYS = ("token_type_ids", "mm_token_type_ids")
# Completion-aligned tensors whose padding is not 0 (None: the pad token).
COMPLETION_PADDING: dict[str, int | None] = {"completion_ids": None, "tool_mask": 1}
BATCH_SCALARS = ("num_items_in_batch",)


class ThinkFlowGRPOTrainer(ResumeWeightsMixin, GRPOTrainer):
    """`GRPOTrainer` with optional zero-variance group filtering (see the module docstring).

    It also restores checkpoint weights correctly on resume (see `ResumeWeightsMixin`).
    """

    def __init__(self, *args: Any, dynamic_sampling: bool = False, dynamic_sampling_max_rounds: int = 4, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        self.dynamic_sampling_max_rounds = max(1, dynamic_sampling_max_rounds)
        self._last_rewards_per_func: torch.Tensor | None = None
        self._image_list_keys: set[str] = set()
        self.group_size = int(self.num_generations or 0)
        if dynamic_sampling:
            local = self.args.per_device_train_batch_size * int(getattr(self.args, "steps_per_generation", 0) or 0)
            if local % self.group_size:
                raise ValueError(
                    f"dynamic sampling needs whole groups on every process: per-process generation batch {local} "
                    f"is not a multiple of num_generations {self.group_size}"
                )
            if not hasattr(self.train_dataset, "__getitem__") or not hasattr(self.train_dataset, "__len__"):
                raise ValueError("dynamic sampling needs a map-style training dataset (not an IterableDataset)")

    # ---------------------------------------------------------------------------------------- TRL hooks

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> torch.Tensor:
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.dynamic_sampling or not getattr(self.model, "training", False):
            return super()._generate_and_score_completions(inputs)
        group = self.group_size
        target = len(inputs) // group  # groups this process must deliver
        kept: list[dict[str, Any]] = []
        spare: list[dict[str, Any]] = []
        batch, rounds, kept_frac = inputs, 0, None
        while True:
            rounds += 1
            output = super()._generate_and_score_completions(batch)
            keep_local, frac = self._group_keep_mask(len(batch))
            kept_frac = frac if kept_frac is None else kept_frac
            rows = self._split_rows(output)
            for g, keep in enumerate(keep_local.tolist()):
                target_list = kept if keep else spare
                if keep or len(spare) < target * group:
                    target_list.extend(rows[g * group : (g + 1) * group])
            have = torch.tensor(len(kept) // group, device=self.accelerator.device)
            least = int(self.accelerator.gather(have).min().item())
            if least >= target or rounds >= self.dynamic_sampling_max_rounds:
                break
            batch = self._refill_inputs(len(inputs), rounds)
        missing = max(0, target - len(kept) // group)
        if missing:
            log.warning(
                "dynamic sampling: %d of %d groups still without reward variance after %d rounds; "
                "filling with zero-variance groups (no gradient)",
                missing,
                target,
                rounds,
            )
            kept.extend(spare[: missing * group])
        merged = self._merge_rows(kept[: target * group])
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/rounds"].append(float(rounds))
        metrics["dynamic_sampling/kept_frac"].append(float(kept_frac or 0.0))
        filled = self.accelerator.gather(torch.tensor(missing / max(1, target), device=self.accelerator.device))
        metrics["dynamic_sampling/filled_zero_std_frac"].append(float(filled.float().mean().item()))
        return merged

    # ------------------------------------------------------------------------------------------ helpers

    def _group_keep_mask(self, local_size: int) -> tuple[torch.Tensor, float]:
        """(keep flag per local group, share of all groups with reward variance) from the last rewards."""
        rewards_per_func = self._last_rewards_per_func
        if rewards_per_func is None:
            raise RuntimeError("dynamic sampling: no rewards were computed for the batch")
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        grouped = rewards.view(-1, self.group_size)
        std = nanstd(grouped, dim=1)
        has_variance = torch.nan_to_num(std, nan=0.0) > 1e-6
        per_process = local_size // self.group_size
        start = self.accelerator.process_index * per_process
        return has_variance[start : start + per_process].cpu(), float(has_variance.float().mean().item())

    def _refill_inputs(self, local_size: int, round_index: int) -> list[dict[str, Any]]:
        """Further prompts for this process (each repeated ``num_generations`` times), same draw on every rank."""
        group = self.group_size
        per_process = local_size // group
        total = per_process * self.accelerator.num_processes
        generator = torch.Generator().manual_seed(
            int(self.args.seed) + 1_000_003 * (int(self.state.global_step) + 1) + 7_919 * round_index
        )
        size = len(self.train_dataset)  # type: ignore[arg-type]
        if size >= total:
            order = torch.randperm(size, generator=generator)[:total]
        else:
            order = torch.randint(size, (total,), generator=generator)
        mine = order[self.accelerator.process_index * per_process : (self.accelerator.process_index + 1) * per_process]
        rows: list[dict[str, Any]] = []
        for index in mine.tolist():
            row = self.train_dataset[int(index)]  # type: ignore[index]
            rows.extend(dict(row) for _ in range(group))
        return rows

    def _split_rows(self, output: dict[str, Any]) -> list[dict[str, Any]]:
        """One dict per completion from a scored generation batch (pixel values split per sample)."""
        split: dict[str, Any] = split_pixel_values_by_grid(output)
        self._image_list_keys = {k for k, v in split.items() if isinstance(v, list) and not isinstance(output[k], list)}
        size, prompt_width = split["prompt_ids"].size(0), split["prompt_ids"].size(1)
        completion_width = split["completion_ids"].size(1)
        rows: list[dict[str, Any]] = [{} for _ in range(size)]
        for key, value in split.items():
            if key in BATCH_SCALARS:
                continue
            if value is None:
                for row in rows:
                    row[key] = None
            elif key in SPANNING_KEYS:
                for i, row in enumerate(rows):
                    row[key] = (value[i, :prompt_width], value[i, prompt_width:])
            elif isinstance(value, list) and len(value) == size:
                for i, row in enumerate(rows):
                    row[key] = value[i]
            elif isinstance(value, torch.Tensor) and value.ndim >= 1 and value.size(0) == size:
                if key not in PROMPT_KEYS and value.ndim == 2 and value.size(1) not in (completion_width, 1):
                    shape = tuple(value.shape)
                    raise RuntimeError(f"dynamic sampling: cannot align model input {key!r} of shape {shape}")
                for i, row in enumerate(rows):
                    row[key] = value[i]
            else:
                what = str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
                raise RuntimeError(f"dynamic sampling: cannot split model input {key!r} ({what}) per sample")
        return rows

    def _merge_rows(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Re-pad per-sample rows (possibly from several rounds) into one batch, as TRL builds it."""
        pad_id = self._tokenizer.pad_token_id
        merged: dict[str, Any] = {}
        for key in rows[0]:
            values = [row[key] for row in rows]
            if values[0] is None:
                merged[key] = None
            elif key in PROMPT_KEYS:
                fill = PROMPT_KEYS[key]
                merged[key] = pad(values, padding_value=pad_id if fill is None else fill, padding_side="left")
            elif key in SPANNING_KEYS:
                left = pad([v[0] for v in values], padding_value=0, padding_side="left")
                right = pad([v[1] for v in values], padding_value=0, padding_side="right")
                merged[key] = torch.cat([left, right], dim=1)
            elif key in self._image_list_keys:
                merged[key] = torch.cat(values, dim=0)
            elif isinstance(values[0], torch.Tensor) and values[0].ndim == 0:
                merged[key] = torch.stack(values)
            elif isinstance(values[0], torch.Tensor):
                fill = COMPLETION_PADDING.get(key, 0)
                merged[key] = pad(values, padding_value=pad_id if fill is None else fill, padding_side="right")
            else:
                merged[key] = list(values)
        loss_mask = merged["completion_mask"]
        if merged.get("tool_mask") is not None:
            loss_mask = loss_mask * merged["tool_mask"]
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        return merged
