"""SFT on the tiny model: response-only labels, frozen vision tower, LoRA, the saved model, lineage, MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from thinkflow.config import load_config
from thinkflow.format import SYSTEM_PROMPT
from thinkflow.train.sft import SFTConfig, build_trainer, run

IGNORE = -100


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    from thinkflow.data.synthetic import generate

    out = tmp_path_factory.mktemp("sft-data") / "data"
    generate(str(out), 24, seed=1)
    return str(out)


def _cfg(tiny_model: Path, data: str, out: Path, *sets: str) -> SFTConfig:
    return load_config(
        SFTConfig,
        "tiny-sft",
        [f"model={tiny_model}", f"data={data}", f"output_dir={out}", "max_steps=2", "save_steps=2", *sets],
    )


def test_only_the_response_is_supervised(tiny_model: Path, data: str, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, data, tmp_path / "out", "per_device_train_batch_size=3")
    prepared = build_trainer(cfg, tiny_model, tmp_path / "ckpt", [])
    trainer, tokenizer = prepared.trainer, prepared.processor.tokenizer
    rows = [dict(trainer.train_dataset[i]) for i in range(3)]
    responses = [r["completion"][0]["content"][0]["text"] for r in rows]
    batch = trainer.data_collator([dict(r) for r in rows])
    image_token = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert batch["pixel_values"].shape[0] > 0 and (batch["input_ids"] == image_token).any()
    for i, response in enumerate(responses):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        supervised = labels != IGNORE
        assert torch.equal(labels[supervised], ids[supervised])  # supervised labels are the tokens themselves
        assert tokenizer.decode(ids[supervised]) == response + "<|im_end|>\n"  # exactly the assistant turn
        assert (labels[mask == 0] == IGNORE).all()  # padding
        assert (labels[ids == image_token] == IGNORE).all()  # image tokens
        prompt_text = tokenizer.decode(ids[(~supervised) & (mask == 1)])
        assert SYSTEM_PROMPT in prompt_text  # the VLAA-Thinker system prompt (thinkflow.format)
        assert rows[i]["prompt"][1]["content"][1]["text"] in prompt_text  # the question, unsupervised


def test_vision_tower_frozen_language_model_trained(tiny_model: Path, data: str, tmp_path: Path) -> None:
    prepared = build_trainer(_cfg(tiny_model, data, tmp_path / "out"), tiny_model, tmp_path / "ckpt", [])
    model = prepared.trainer.model
    vision = {n for n, _ in model.model.visual.named_parameters()}
    assert vision and not any(p.requires_grad for p in model.model.visual.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if "visual" not in n)


def test_lora_excludes_the_vision_tower(tiny_model: Path, data: str, tmp_path: Path) -> None:
    from peft import PeftModel

    cfg = _cfg(tiny_model, data, tmp_path / "out", "lora.enabled=true", "lora.r=4", "lora.alpha=8")
    model = build_trainer(cfg, tiny_model, tmp_path / "ckpt", []).trainer.model
    assert isinstance(model, PeftModel)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    assert any("language_model" in n for n in trainable)


def test_sft_run_saves_a_loadable_model_with_lineage(
    tiny_model: Path, data: str, tmp_path: Path, mlflow_db: str
) -> None:
    from mlflow import MlflowClient
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from thinkflow.data import load_split, manifest_hash

    out = tmp_path / "sft"
    result = run(_cfg(tiny_model, data, out))
    assert result.stage == "sft" and result.output == str(out) and result.metrics["global_step"] == 2
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert hasattr(processor, "image_processor") and processor.tokenizer.chat_template
    base = AutoModelForImageTextToText.from_pretrained(tiny_model)
    changed = [
        n
        for (n, p), (_, q) in zip(model.named_parameters(), base.named_parameters(), strict=True)
        if not torch.equal(p, q)
    ]
    assert changed and not any("visual" in n for n in changed)  # trained, vision tower untouched
    assert not (out / "training_args.bin").exists()
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["stage"] == "sft" and lineage["global_step"] == 2
    n_sft = sum(row["completion"] is not None for row in load_split(data, "sft"))
    assert lineage["dataset"] == {
        "uri": data,
        "manifest_hash": manifest_hash(data),
        "split": "sft",
        "num_examples": n_sft,
    }
    assert lineage["base_model"]["uri"] == str(tiny_model)
    assert lineage["config"]["learning_rate"] == 1e-4 and lineage["config"]["model"] == str(tiny_model)
    assert {"torch", "transformers", "trl", "thinkflow", "python"} <= set(lineage["versions"])
    assert "git_sha" in lineage and lineage["mlflow_run_id"] == result.mlflow_run_id
    client = MlflowClient()
    mlrun = client.get_run(result.mlflow_run_id)
    assert mlrun.data.params["learning_rate"] == "0.0001" and mlrun.data.params["lora.enabled"] == "False"
    assert mlrun.data.tags["thinkflow.stage"] == "sft"
    assert {"loss", "learning_rate", "grad_norm", "step_seconds", "tokens_per_second"} <= set(mlrun.data.metrics)
    assert [m.step for m in client.get_metric_history(result.mlflow_run_id, "loss")] == [1, 2]
    assert "lineage.json" in {a.path for a in client.list_artifacts(result.mlflow_run_id)}


def test_lora_run_saves_merged_weights(tiny_model: Path, data: str, tmp_path: Path, mlflow_db: str) -> None:
    from transformers import AutoModelForImageTextToText

    out = tmp_path / "sft-lora"
    run(_cfg(tiny_model, data, out, "lora.enabled=true", "lora.r=4", "lora.alpha=8", "learning_rate=0.05"))
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForImageTextToText.from_pretrained(out)
    base = AutoModelForImageTextToText.from_pretrained(tiny_model)
    q_merged = merged.model.language_model.layers[0].self_attn.q_proj.weight
    q_base = base.model.language_model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q_merged, q_base)
    assert torch.equal(merged.model.visual.blocks[0].attn.qkv.weight, base.model.visual.blocks[0].attn.qkv.weight)


def test_data_errors_are_clear(tiny_model: Path, data: str, tmp_path: Path) -> None:
    from thinkflow.train.config import TrainError

    with pytest.raises(TrainError, match="unknown split 'train'"):
        build_trainer(_cfg(tiny_model, data, tmp_path / "o", "split=train"), tiny_model, tmp_path / "c", [])
    with pytest.raises(TrainError, match=r"data .*missing"):
        build_trainer(_cfg(tiny_model, str(tmp_path / "missing"), tmp_path / "o"), tiny_model, tmp_path / "c", [])
