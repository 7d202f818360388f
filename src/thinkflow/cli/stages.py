"""The training and evaluation stages: ``preflight``, ``sft``, ``grpo``, ``evaluate``, ``evaluate-merge``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinkflow.cli.core import (
    ConfigOpt,
    ExplainOpt,
    PrintOpt,
    SetOpt,
    app,
    console,
    err_console,
    resolve_config,
    use_store,
)


def _train(stage: str, config: str | None, sets: list[str] | None, print_config: bool, explain: bool = False) -> None:
    """Run a training stage (sft/grpo) and print where its model went; training errors exit 1."""
    import os

    from thinkflow.train import grpo, sft
    from thinkflow.train.settings import checkpoint_root

    module = sft if stage == "sft" else grpo
    cfg = resolve_config(
        module.SFTConfig if stage == "sft" else grpo.GRPOStageConfig, config, sets, print_config, explain
    )
    use_store()
    try:
        result = module.run(cfg)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        _interrupted(checkpoint_root(stage, cfg))
    if os.environ.get("RANK", "0") != "0":
        return  # one summary per job: the other ranks of a torchrun/TrainJob launch stay quiet
    shown = {k: round(v, 4) for k, v in result.metrics.items() if k in {"global_step", "train_loss", "reward"}}
    console.print(f"[green]{stage} done[/green]: model at {result.output} {shown}")
    if result.mlflow_run_id:
        console.print(f"MLflow run: {result.mlflow_run_id}")


def _interrupted(root: Path) -> None:
    """Ctrl-C during training: say where the last checkpoint is and the command that resumes from it."""
    import shlex
    import sys

    from thinkflow.train.checkpoints import newest_complete

    last = newest_complete(root) if root.is_dir() else None
    where = f"last checkpoint: {last}" if last is not None else f"no complete checkpoint yet in {root}"
    err_console.print(f"[yellow]interrupted[/yellow]; {where}", soft_wrap=True, highlight=False)
    err_console.print(f"resume with: {shlex.join(['thinkflow', *sys.argv[1:]])}", soft_wrap=True, highlight=False)
    raise typer.Exit(130)


@app.command("preflight")
def preflight_command(
    config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False, explain: ExplainOpt = False
) -> None:
    """Check in seconds that teacher/reward endpoints answer, data sources and buckets exist, credentials work."""
    from thinkflow.preflight import PreflightConfig, run

    cfg = resolve_config(PreflightConfig, config, sets, print_config, explain)
    checked = run(cfg)
    listed = f" ({', '.join(checked)})" if checked else ""
    console.print(f"[green]preflight ok[/green]: {len(checked)} checks{listed}", soft_wrap=True, highlight=False)


@app.command("sft")
def sft_command(
    config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False, explain: ExplainOpt = False
) -> None:
    """Supervised fine-tuning on the sft split (TRL SFTTrainer; response-only loss, vision tower frozen)."""
    _train("sft", config, sets, print_config, explain)


@app.command("grpo")
def grpo_command(
    config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False, explain: ExplainOpt = False
) -> None:
    """GRPO with the mixed reward on the rl split (TRL GRPOTrainer; the paper's defaults)."""
    _train("grpo", config, sets, print_config, explain)


@app.command("evaluate")
def evaluate_command(
    config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False, explain: ExplainOpt = False
) -> None:
    """Evaluate a model on the benchmarks / a dataset's eval split; writes metrics.json and the reports."""
    from thinkflow.evaluate import EvalConfig, run

    cfg = resolve_config(EvalConfig, config, sets, print_config, explain)
    use_store()
    result = run(cfg)
    scores = {k: round(v, 4) for k, v in result.metrics.items() if k.endswith("score") or k == "overall.format_rate"}
    console.print(f"[green]evaluate done[/green]: {result.output} {scores}")


@app.command("evaluate-merge")
def evaluate_merge_command(
    parts: Annotated[list[str], typer.Argument(help="Outputs (dirs or s3:// URIs) of `evaluate --set part=NAME`.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output dir or s3:// URI of the whole evaluation.")],
    print_config: PrintOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Join the per-benchmark parts of one evaluation: the metrics.json and reports one `evaluate` task writes."""
    import json

    from thinkflow.evaluate.merge import MergeEvalConfig, run

    overrides = [f"parts={json.dumps(parts)}", f"output_dir={json.dumps(output)}"]
    cfg = resolve_config(MergeEvalConfig, None, overrides, print_config, explain)
    use_store()
    try:
        result = run(cfg)
    except ValueError as exc:
        console.print(f"[red]evaluate-merge failed:[/red] {exc}")
        raise typer.Exit(1) from None
    scores = {k: round(v, 4) for k, v in result.metrics.items() if k.endswith("score") or k == "overall.format_rate"}
    console.print(f"[green]evaluate merged[/green]: {result.output} {scores}")
