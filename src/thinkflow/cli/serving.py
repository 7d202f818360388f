"""Servers: ``serve-model``, ``serve-reward``, ``rewards score``, ``serve-init``, ``serve-sync``, ``serve-smoke``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thinkflow import env
from thinkflow.cli.core import ConfigOpt, ExplainOpt, PrintOpt, SetOpt, app, console, resolve_config, rewards_app


@app.command("serve-model")
def serve_model(
    model_dir: Annotated[str, typer.Argument(help="Model dir or s3:// URI.")],
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    name: Annotated[str | None, typer.Option(help="Model id in /v1/models (default: the dir name).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu / cuda (default: cuda when available).")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | bfloat16 | float16.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Default max_tokens of a request.")] = 256,
    version_file: Annotated[
        str | None, typer.Option("--version-file", help="served.json of serve-init: report that registry version.")
    ] = None,
) -> None:
    """Serve a VLM as an OpenAI-compatible chat endpoint (images included) for teachers and judges."""
    from thinkflow.data.serve import serve
    from thinkflow.serving.resolve import read_served

    served = read_served(version_file) if version_file else None
    serve(
        model_dir,
        host=host,
        port=port,
        name=name,
        device=device,
        dtype=dtype,
        default_max_tokens=max_tokens,
        served=served,
    )


@app.command("serve-reward")
def serve_reward(
    model: Annotated[str, typer.Option("--model", help="Reward model dir or s3:// URI.")],
    kind: Annotated[str, typer.Option(help="ixc2.5-reward | sequence-classification | logprob.")] = "ixc2.5-reward",
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable with the bearer token clients must send (unset: none).")
    ] = env.REWARD_API_KEY,
    batch_size: Annotated[int, typer.Option(help="Answers per forward pass.")] = 8,
    max_queue: Annotated[int, typer.Option(help="Requests waiting at most; more get 503.")] = 64,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB; larger get 413.")] = 16.0,
) -> None:
    """Serve an open-ended reward model over the scorer protocol (POST /score, GET /health) for GRPO."""
    from thinkflow.rewards.serve import ServeError, serve

    try:
        serve(
            model,
            kind,
            host=host,
            port=port,
            api_key_env=api_key_env or None,
            batch_size=batch_size,
            max_queue=max_queue,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
        )
    except ServeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@rewards_app.command("score")
def rewards_score(
    input_path: Annotated[Path, typer.Argument(help="JSON lines: completion, solution, verifier_type.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output JSON lines: each input line plus reward.")],
    config: ConfigOpt = None,
    sets: SetOpt = None,
    print_config: PrintOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Score completions with the mixed reward (RewardConfig keys via --set, e.g. --set beta=0.5)."""
    from thinkflow.rewards import RewardConfig, score_file

    cfg = resolve_config(RewardConfig, config, sets, print_config, explain)
    summary = score_file(input_path, output, cfg)
    console.print(summary.table())


@app.command("serve-init")
def serve_init_command(
    config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False, explain: ExplainOpt = False
) -> None:
    """Resolve models:/NAME@ALIAS in MLflow and stage that version's weights (the serving init container)."""
    from thinkflow.serving.resolve import ServeInitConfig, serve_init

    cfg = resolve_config(ServeInitConfig, config, sets, print_config, explain)
    result = serve_init(cfg)
    how = "downloaded" if result.metrics["downloaded"] else "cached"
    console.print(f"[green]serving {result.artifacts['model_uri']}[/green] ({how}) at {result.output}")


@app.command("serve-sync")
def serve_sync_command(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    print_config: PrintOpt = False,
    explain: ExplainOpt = False,
    once: Annotated[bool, typer.Option("--once", help="One pass over the watched aliases, then exit.")] = False,
) -> None:
    """Roll serving Deployments to the version their alias names; smoke-test, pause on failure, record."""
    from thinkflow.serving.sync import SyncConfig, run, sync_once

    cfg = resolve_config(SyncConfig, config, sets, print_config, explain)
    if once:
        for plan in sync_once(cfg):
            console.print(f"{plan.action}: {plan.reason}")
    else:
        run(cfg)


@app.command("serve-smoke")
def serve_smoke_command(
    endpoint: Annotated[str, typer.Option("--endpoint", help="OpenAI base URL of the endpoint (…/v1).")],
    name: Annotated[str, typer.Option("--name", help="Registered model name (the served model id).")],
    version: Annotated[str | None, typer.Option("--version", help="Also require this version to answer.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Generation budget.")] = 1024,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="Env var with the bearer token.")] = (
        env.SERVING_API_KEY
    ),
) -> None:
    """Ask the endpoint the fixed smoke question; exit 1 unless it answers <think>…</think><answer>…</answer>."""
    import os

    from thinkflow.serving.smoke import smoke_request

    result = smoke_request(endpoint, name, api_key=os.environ.get(api_key_env), max_tokens=max_tokens)
    if result.ok and version is not None and result.version != version:
        console.print(f"[red]smoke failed:[/red] answered as version {result.version}, expected {version}")
        raise typer.Exit(1)
    if not result.ok:
        console.print(f"[red]smoke failed:[/red] {result.reason}")
        raise typer.Exit(1)
    console.print(f"[green]smoke ok[/green]: version {result.version or 'unknown'} answered {result.completion!r}")
