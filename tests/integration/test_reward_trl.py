"""The mixed reward inside a real TRL GRPOTrainer step: accepted as a reward function, metrics logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image


@pytest.mark.slow
def test_grpo_trainer_logs_the_mixed_reward_metrics(tiny_model: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from thinkflow.models.load import load
    from thinkflow.rewards import MixedReward

    model, processor = load(tiny_model, device="cpu")
    kinds = [("digit", "3"), ("mcq", "(B)"), ("math", "\\frac{1}{2}"), ("iou", "[0, 0, 10, 10]")]
    rows = [
        {
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"Question {i}?"}]}],
            "image": Image.new("RGB", (56, 56), "white"),
            "solution": solution,
            "verifier_type": vt,
        }
        for i, (vt, solution) in enumerate(kinds * 2)
    ]
    reward = MixedReward()
    reward.check(r["verifier_type"] for r in rows)  # what the GRPO stage does before training
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model, processing_class=processor, reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows)
    )
    trainer.train()
    logged = [h for h in trainer.state.log_history if "rewards/mixed_reward/mean" in h]
    assert len(logged) == 2
    for entry in logged:
        assert 0.0 <= entry["mixed_reward/format_failure"] <= 1.0
        per_verifier = {k for k in entry if k.startswith("mixed_reward/") and k.endswith("/accuracy")}
        assert per_verifier and per_verifier <= {f"mixed_reward/{vt}/accuracy" for vt, _ in kinds}
