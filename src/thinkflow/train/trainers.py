"""ThinkFlow's SFT trainer: TRL's `SFTTrainer` plus correct weight restore on resume.

(The GRPO trainer, with zero-variance group filtering, is `thinkflow.train.dynamic_sampling.ThinkFlowGRPOTrainer`.)
"""

from __future__ import annotations

from trl import SFTTrainer

from thinkflow.train.checkpoints import ResumeWeightsMixin


class ThinkFlowSFTTrainer(ResumeWeightsMixin, SFTTrainer):
    """TRL's `SFTTrainer` that restores checkpoint weights correctly on resume (see `ResumeWeightsMixin`)."""
