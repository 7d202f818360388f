"""The run loop SFT and GRPO share: preflight, resume, the MLflow run with per-step metrics, training, and the
final save (weights + processor + ``lineage.json``, uploaded when the output is ``s3://``). A stage whose
``launch.mode`` is not ``process`` is handed to `thinkflow.train.launch` instead."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinkflow import storage
from thinkflow.config import StageResult
from thinkflow.train import checkpoints
from thinkflow.train.config import TrainStageConfig
from thinkflow.train.inputs import dataset_manifest_hash, preflight
from thinkflow.train.settings import checkpoint_root, ensure_log_handler, rank, world_size

log = logging.getLogger("thinkflow.train")


@dataclass
class Prepared:
    """A trainer ready to train, and what the run loop needs to record about it."""

    trainer: Any
    processor: Any
    num_examples: int
    merge_lora: bool = True
    extra_lineage: dict[str, Any] = field(default_factory=dict)


def run_stage(
    stage: str,
    cfg: TrainStageConfig,
    prepare: Callable[[TrainStageConfig, Path, Path, list[Any]], Prepared],
) -> StageResult:
    """Train one stage: resume, train, save, record (the body of `sft.run` and `grpo.run`).

    ``prepare(cfg, model_dir, checkpoint_root, callbacks)`` builds the trainer. Only the main process opens
    the MLflow run, writes the final model and the lineage, and uploads. With ``launch.mode`` other than
    ``process`` the stage is launched (torchrun, TrainJob) and this returns the launched run's result.
    """
    if cfg.launch.mode != "process":
        from thinkflow.train.launch import launch

        return launch(stage, cfg)
    from thinkflow.tracking import stage_run
    from thinkflow.train.callbacks import MLflowMetricsCallback

    ensure_log_handler()
    model_dir = preflight(stage, cfg)  # fail on bad inputs before anything is created
    root = checkpoint_root(stage, cfg)
    main = rank() == 0
    if main:
        root.mkdir(parents=True, exist_ok=True)
    resume = checkpoints.prepare_resume(root, remove_incomplete=main)
    params = cfg.model_dump(mode="json")
    with stage_run(stage, params) if main else nullcontext() as run:
        run_id = run.info.run_id if run is not None else None
        callbacks: list[Any] = []
        metrics_cb = None
        if run_id is not None:
            import mlflow

            mlflow.set_tags({"thinkflow.output": cfg.output_dir, "thinkflow.checkpoints": str(root)})
            if resume is not None:
                mlflow.set_tag("thinkflow.resumed_from", str(resume))
            metrics_cb = MLflowMetricsCallback(run_id, world_size=world_size())
            callbacks.append(metrics_cb)
        prepared = prepare(cfg, model_dir, root, callbacks)
        trainer = prepared.trainer
        try:
            result = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        finally:
            if metrics_cb is not None:
                metrics_cb.flush()  # also when training fails: the metrics up to the failure are kept
        metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
        metrics["global_step"] = float(trainer.state.global_step)
        if metrics_cb is not None:
            metrics.update({k: v for k, v in metrics_cb.last.items() if k not in metrics})
        final_dir = root / "final" if storage.is_remote(cfg.output_dir) else Path(cfg.output_dir)
        save_final_model(trainer, prepared, final_dir)
        artifacts = {"checkpoints": str(root)}
        if main:
            from thinkflow.train.lineage import build_lineage, write_lineage

            lineage = build_lineage(
                stage=stage,
                config=params,
                base_model=cfg.model,
                data=cfg.data,
                manifest_hash=dataset_manifest_hash(cfg.data),
                split=cfg.split,
                num_examples=prepared.num_examples,
                global_step=trainer.state.global_step,
                metrics=metrics,
                mlflow_run_id=run_id,
                resumed_from=str(resume) if resume is not None else None,
            )
            lineage.update(prepared.extra_lineage)
            write_lineage(final_dir, lineage)
            if storage.is_remote(cfg.output_dir):
                storage.upload(final_dir, cfg.output_dir)
                shutil.rmtree(final_dir, ignore_errors=True)
            artifacts["lineage"] = storage.join(cfg.output_dir, "lineage.json")
            if run_id is not None:
                import mlflow

                mlflow.log_dict(lineage, "lineage.json")
        trainer.accelerator.wait_for_everyone()
        if main:
            log.info(
                "%s finished at global_step %d; model saved to %s", stage, trainer.state.global_step, cfg.output_dir
            )
    return StageResult(stage=stage, output=cfg.output_dir, metrics=metrics, artifacts=artifacts, mlflow_run_id=run_id)


def save_final_model(trainer: Any, prepared: Prepared, out_dir: Path) -> None:
    """Save weights + processor to ``out_dir`` so ``AutoModelForImageTextToText.from_pretrained`` loads it.

    A LoRA run saves its adapter, then (main process) merges it into a CPU copy of the base weights, unless
    ``lora.merge`` is false (then the adapter is what is saved).
    """
    from peft import PeftModel

    model = trainer.accelerator.unwrap_model(trainer.model)
    is_peft = isinstance(model, PeftModel)
    if not is_peft or not prepared.merge_lora:
        trainer.save_model(str(out_dir))
        if trainer.accelerator.is_main_process:
            prepared.processor.save_pretrained(out_dir)
            _drop_trainer_files(out_dir)
        return
    adapter_dir = out_dir.parent / f".{out_dir.name}.adapter"
    trainer.save_model(str(adapter_dir))
    if trainer.accelerator.is_main_process:
        from thinkflow.models.load import load_model

        base_path = model.peft_config["default"].base_model_name_or_path
        base = load_model(base_path, dtype="auto")  # the base checkpoint's dtype
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
        merged.save_pretrained(out_dir)
        prepared.processor.save_pretrained(out_dir)
        shutil.rmtree(adapter_dir, ignore_errors=True)


def _drop_trainer_files(out_dir: Path) -> None:
    """Remove the pickled TrainingArguments the Trainer leaves beside the final weights (not model files)."""
    (out_dir / "training_args.bin").unlink(missing_ok=True)
