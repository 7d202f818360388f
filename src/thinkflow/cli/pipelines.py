"""Pipelines: ``run`` (kfp.local), ``compile`` (the KFP packages) and ``submit`` (to a KFP server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinkflow.cli.core import app, console, err_console
from thinkflow.tracking import DEFAULT_ROOT

PipelineOpt = Annotated[str, typer.Option("--pipeline", "-p", help="vlaa_thinker | sft_then_grpo | sft_vs_rl_study")]
ParamsOpt = Annotated[Path | None, typer.Option("--params", help="YAML/JSON file: pipeline parameter -> value.")]


@app.command("run")
def run_command(
    pipeline: PipelineOpt = "vlaa_thinker",
    root: Annotated[Path, typer.Option("--root", help="Where MLflow, artifacts and the tiny model go.")] = Path(
        DEFAULT_ROOT
    ),
    params: ParamsOpt = None,
    model: Annotated[str | None, typer.Option("--model", help="Base model dir (default: the tiny model).")] = None,
) -> None:
    """Run a pipeline end to end on this machine (kfp.local) on the embedded default and print a summary."""
    from thinkflow.pipelines import run_local
    from thinkflow.pipelines.local import render_summary
    from thinkflow.pipelines.remote import read_params
    from thinkflow.tracking import store_uri

    err_console.print(f"MLflow store: {store_uri(root)}", soft_wrap=True, highlight=False)
    result = run_local(pipeline, root, read_params(params) if params else None, model=model)
    console.print(render_summary(result))


@app.command("compile")
def compile_command(
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="Where the packages go.")] = Path("pipelines"),
    registry: Annotated[str | None, typer.Option(help="Image registry (default: ghcr.io/thinkflow).")] = None,
    tag: Annotated[str | None, typer.Option(help="Image tag (default: the package version).")] = None,
    rwx_storage_class: Annotated[
        str | None,
        typer.Option(
            "--rwx-storage-class",
            help="StorageClass for a ReadWriteMany workspace: the study trains its recipes in parallel "
            "(default: the cluster's default class, ReadWriteOnce, one recipe at a time).",
        ),
    ] = None,
) -> None:
    """Compile every pipeline to OUT_DIR/<name>.yaml (KFP IR YAML, for upload in the KFP UI)."""
    from thinkflow.pipelines import compile_all
    from thinkflow.pipelines.common import options_for_images

    for path in compile_all(out_dir, options_for_images(registry, tag, rwx_storage_class)):
        console.print(f"wrote {path}")


@app.command("submit")
def submit_command(
    host: Annotated[str, typer.Option("--host", help="KFP API/UI URL, e.g. http://localhost:8080.")],
    pipeline: PipelineOpt = "vlaa_thinker",
    params: ParamsOpt = None,
    experiment: Annotated[str, typer.Option("--experiment", help="KFP experiment.")] = "thinkflow",
    recurring: Annotated[str | None, typer.Option("--recurring", help="Cron schedule: a recurring run.")] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="Run name (default: pipeline-time).")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", help="Multi-user KFP: profile namespace.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Disable caching for every task.")] = False,
) -> None:
    """Upload a pipeline version to KFP and start a run (or a recurring run); prints the run's UI link."""
    from thinkflow.pipelines import submit
    from thinkflow.pipelines.remote import read_params

    result = submit(
        host,
        pipeline,
        read_params(params) if params else None,
        experiment=experiment,
        recurring=recurring,
        run_name=run_name,
        namespace=namespace,
        enable_caching=False if no_cache else None,
    )
    kind = "recurring run" if result.recurring_run_id else "run"
    console.print(f"[green]{kind} created[/green] from {result.pipeline} version {result.version_name}")
    console.print(result.url)
