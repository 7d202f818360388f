"""The ``thinkflow`` command line. Commands stay thin: parse arguments, call one library function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from thinkflow import env
from thinkflow.config import StageConfig, load_config
from thinkflow.errors import DEBUG_ENV, ThinkFlowError, debug_enabled, one_line
from thinkflow.tracking import DEFAULT_ROOT

USER_ERRORS = (ThinkFlowError, OSError, ValueError)  # what a user can cause: printed as one line


class ThinkFlowGroup(TyperGroup):
    """The one error handler: a user error prints one line and exits 1 (2 for usage); ``--debug`` re-raises."""

    def invoke(self, ctx: Any) -> Any:  # typer's (vendored) click Context
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            if debug_enabled():
                raise
            code = getattr(exc, "exit_code", 1)
            err_console.print(f"[red]error:[/red] {error_line(exc)}", soft_wrap=True, highlight=False)
            raise typer.Exit(code) from None


def error_line(exc: BaseException) -> str:
    """One line for a user error; files of OS errors are named, and ``--debug`` is offered for the rest."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    line = one_line(exc)
    return line if isinstance(exc, ThinkFlowError) else f"{line} ({type(exc).__name__}; --debug shows the traceback)"


app = typer.Typer(
    cls=ThinkFlowGroup,
    help="ThinkFlow: train R1-style reasoning VLMs with the VLAA-Thinker recipe.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Datasets: import, synthesize, validate.", no_args_is_help=True)
rewards_app = typer.Typer(help="Rewards: score completions with the mixed reward.", no_args_is_help=True)
models_app = typer.Typer(help="Registered models in MLflow.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(rewards_app, name="rewards")
app.add_typer(models_app, name="models")
console = Console()
err_console = Console(stderr=True)
C = TypeVar("C", bound=StageConfig)


@app.callback()
def main_options(
    debug: Annotated[
        bool, typer.Option("--debug", envvar=DEBUG_ENV, help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """ThinkFlow: train R1-style reasoning VLMs with the VLAA-Thinker recipe."""
    if debug:
        import os

        os.environ[DEBUG_ENV] = "1"  # the pipeline's tasks (subprocesses) inherit it


def use_store() -> str:
    """Point this command at the one MLflow store (`thinkflow.tracking.store_uri`) and say which it is."""
    from thinkflow.tracking import use_store as _use

    uri = _use()
    err_console.print(f"MLflow store: {uri}", soft_wrap=True, highlight=False)
    return uri


ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="Preset name or YAML file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set lr=1e-6 (repeatable).")]
PrintOpt = Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")]


def resolve_config(cls: type[C], config: str | None, sets: list[str] | None, print_only: bool) -> C:
    """Load a stage config for a command; print it and exit with ``--print-config``; config errors exit 2."""
    cfg = load_config(cls, config, sets)
    if print_only:
        typer.echo(cfg.to_yaml())
        raise typer.Exit(0)
    return cfg


@app.command("tiny-model")
def tiny_model(
    out_dir: Path,
    family: Annotated[str, typer.Option(help="qwen2.5-vl | qwen2-vl")] = "qwen2.5-vl",
    seed: Annotated[int, typer.Option(help="Random seed for weights and tokenizer.")] = 0,
) -> None:
    """Build a tiny random Qwen2.5-VL / Qwen2-VL offline and save it to OUT_DIR."""
    from thinkflow.models.tiny import FAMILIES, build_tiny

    if family not in FAMILIES:
        raise typer.BadParameter(f"choose one of {', '.join(FAMILIES)}", param_hint="--family")
    path = build_tiny(out_dir, family=family, seed=seed)  # type: ignore[arg-type]
    console.print(f"tiny {family} saved to {path}")


@app.command("ask")
def ask(
    model: Annotated[str, typer.Argument(help="Model dir or s3:// URI.")],
    image: Annotated[Path, typer.Option(help="Image file.")],
    question: Annotated[str, typer.Option(help="Question about the image.")],
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget.")] = 64,
    system_prompt: Annotated[
        str | None,
        typer.Option(help='System prompt (default: the VLAA-Thinker prompt, as in training; "" for none).'),
    ] = None,
) -> None:
    """Ask a model a question about an image and print its answer (greedy, the training system prompt)."""
    from PIL import Image

    from thinkflow.evaluate.generate import generate
    from thinkflow.format import SYSTEM_PROMPT
    from thinkflow.models.load import load

    mdl, proc = load(model)
    prompt = SYSTEM_PROMPT if system_prompt is None else system_prompt
    with Image.open(image) as im:
        answer = generate(
            mdl, proc, [im.convert("RGB")], [question], max_new_tokens=max_new_tokens, system_prompt=prompt
        )[0]
    console.print(f"[bold]Q:[/bold] {question}\n[bold]A:[/bold] {answer!r}")


def _run_build(cfg: StageConfig) -> None:
    """Run a dataset build and print its counts; build errors exit 1."""
    from thinkflow import storage
    from thinkflow.data.build import BuildError, rejection_summary, run

    use_store()
    result = run(cfg)  # type: ignore[arg-type]
    if "candidates" not in result.metrics and not result.metrics.get("records"):
        rejected = storage.localize(result.artifacts["rejected"])
        raise BuildError(f"no records built into {result.output}: {rejection_summary(rejected, result.output)}")
    m = {k: int(v) for k, v in result.metrics.items() if k.startswith("records") or k in ("rejected", "candidates")}
    if "candidates" in m:
        console.print(
            f"[green]shard built[/green]: {result.output}: {m['candidates']} candidates, {m['records']} kept, "
            f"{m['rejected']} rejected (merge the shards with `thinkflow data merge`)"
        )
        return
    splits = ", ".join(f"{s} {m.get(f'records_{s}', 0)}" for s in ("sft", "rl", "eval"))
    console.print(
        f"[green]dataset built[/green]: {result.output}: {m['records']} records ({splits}), {m['rejected']} rejected"
    )


@app.command("build")
def build_command(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    print_config: PrintOpt = False,
    shard: Annotated[
        str | None, typer.Option("--shard", help="I/N: build shard I of N into --set output_dir=… (then `data merge`).")
    ] = None,
) -> None:
    """Build a dataset with the six VLAA-Thinking steps (resumable). --config tiny-data: the synthetic default."""
    import json

    from thinkflow.data.build import BuildConfig

    sets = [*(sets or []), *([f"shard={json.dumps(shard)}"] if shard else [])]
    _run_build(resolve_config(BuildConfig, config, sets, print_config))


data_app.command("build", help="Same as `thinkflow build`.")(build_command)


@data_app.command("merge")
def data_merge(
    shards: Annotated[list[str], typer.Argument(help="Shard outputs (dirs or s3:// URIs) of `build --shard I/N`.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Dataset directory or s3:// URI.")],
    sets: SetOpt = None,
    print_config: PrintOpt = False,
) -> None:
    """Merge the N shards of a build: dedupe across shards, split, one manifest (= the unsharded build)."""
    import json

    from thinkflow.data.build import BuildError
    from thinkflow.data.merge import MergeConfig, run

    overrides = [f"shards={json.dumps(shards)}", f"output_dir={json.dumps(output)}", *(sets or [])]
    cfg = resolve_config(MergeConfig, None, overrides, print_config)
    try:
        result = run(cfg)
    except (BuildError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]merge failed:[/red] {exc}")
        raise typer.Exit(1) from None
    m = {k: int(v) for k, v in result.metrics.items()}
    splits = ", ".join(f"{s} {m.get(f'records_{s}', 0)}" for s in ("sft", "rl", "eval"))
    console.print(
        f"[green]dataset merged[/green]: {result.output}: {m['records']} records ({splits}), {m['rejected']} rejected"
    )


@data_app.command("import-vlaa")
def data_import_vlaa(
    json_files: Annotated[
        list[str], typer.Option("--json", help="VLAA-Thinking JSON file (repeatable); SFT->sft, GRPO->rl.")
    ],
    images: Annotated[str, typer.Option("--images", help="Image root folder (local or s3://).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Dataset directory or s3:// URI.")],
    max_samples: Annotated[int | None, typer.Option("--max-samples", help="Cap per file (random by seed).")] = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    print_config: PrintOpt = False,
) -> None:
    """Import the published VLAA-Thinking files (gt -> solution, ds_answer -> <think>/<answer> response)."""
    import json

    from thinkflow.data.build import BuildConfig

    sources = [{"kind": "vlaa", "json_file": f, "images": images, "max_samples": max_samples} for f in json_files]
    overrides = [f"output_dir={json.dumps(output)}", f"sources={json.dumps(sources)}", *(sets or [])]
    cfg = resolve_config(BuildConfig, config, overrides, print_config)
    _run_build(cfg)


@data_app.command("synth")
def data_synth(
    output: Annotated[str, typer.Option("--output", "-o", help="Dataset directory or s3:// URI.")],
    n: Annotated[int, typer.Option("--n", help="Number of scenes (balanced across verifier types).")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Scene and split seed.")] = 0,
    eval_fraction: Annotated[float, typer.Option("--eval-fraction", help="Held-out eval share per type.")] = 0.1,
) -> None:
    """Write a synthetic dataset: PIL-drawn scenes with known answers for every verifier type."""
    from thinkflow.data.synthetic import generate

    if n < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--n")
    result = generate(output, n, seed, eval_fraction=eval_fraction, progress=True)
    counts = ", ".join(f"{s} {int(result.metrics.get(f'records_{s}', 0))}" for s in ("sft", "rl", "eval"))
    console.print(f"[green]synthetic dataset[/green]: {result.output}: {counts}")


@data_app.command("validate")
def data_validate(
    data: Annotated[str, typer.Argument(help="Dataset directory or s3:// URI.")],
    max_bad_fraction: Annotated[
        float, typer.Option("--max-bad-fraction", help="Share of bad records tolerated.")
    ] = 0.0,
    no_images: Annotated[bool, typer.Option("--no-images", help="Skip decoding the images.")] = False,
    rehash: Annotated[
        bool, typer.Option("--rehash", help="After a deliberate hand edit: refresh manifest.json (counts, hashes).")
    ] = False,
) -> None:
    """Check schema, images, boxes and verifier types; exit 1 naming the bad records when too many are bad."""
    import json

    from thinkflow.data.validate import ValidateConfig, run

    sets = [f"data={json.dumps(data)}", f"max_bad_fraction={max_bad_fraction}", f"check_images={not no_images}"]
    cfg = resolve_config(ValidateConfig, None, [*sets, f"rehash={rehash}"], False)
    result = run(cfg)
    m = result.metrics
    if m.get("rehashed"):
        manifest = json.loads(Path(result.artifacts["manifest"]).read_text(encoding="utf-8"))
        changes = "\n  ".join(manifest["rehashed"][-1]["changes"])
        console.print(f"[yellow]manifest refreshed[/yellow]: {result.artifacts['manifest']}:\n  {changes}")
    elif rehash:
        console.print(f"manifest unchanged: {result.artifacts['manifest']} already matches the files")
    console.print(f"[green]valid[/green]: {data}: {int(m['records'])} records, {int(m['bad_records'])} bad")


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
) -> None:
    """Score completions with the mixed reward (RewardConfig keys via --set, e.g. --set beta=0.5)."""
    from thinkflow.rewards import RewardConfig, score_file

    cfg = resolve_config(RewardConfig, config, sets, print_config)
    summary = score_file(input_path, output, cfg)
    console.print(summary.table())


def _train(stage: str, config: str | None, sets: list[str] | None, print_config: bool) -> None:
    """Run a training stage (sft/grpo) and print where its model went; training errors exit 1."""
    import os

    from thinkflow.train import grpo, sft
    from thinkflow.train.settings import checkpoint_root

    module = sft if stage == "sft" else grpo
    cfg = resolve_config(module.SFTConfig if stage == "sft" else grpo.GRPOStageConfig, config, sets, print_config)
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
def preflight_command(config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False) -> None:
    """Check in seconds that teacher/reward endpoints answer, data sources and buckets exist, credentials work."""
    from thinkflow.preflight import PreflightConfig, run

    cfg = resolve_config(PreflightConfig, config, sets, print_config)
    checked = run(cfg)
    listed = f" ({', '.join(checked)})" if checked else ""
    console.print(f"[green]preflight ok[/green]: {len(checked)} checks{listed}", soft_wrap=True, highlight=False)


@app.command("sft")
def sft_command(config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False) -> None:
    """Supervised fine-tuning on the sft split (TRL SFTTrainer; response-only loss, vision tower frozen)."""
    _train("sft", config, sets, print_config)


@app.command("grpo")
def grpo_command(config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False) -> None:
    """GRPO with the mixed reward on the rl split (TRL GRPOTrainer; the paper's defaults)."""
    _train("grpo", config, sets, print_config)


@app.command("evaluate")
def evaluate_command(config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False) -> None:
    """Evaluate a model on the benchmarks / a dataset's eval split; writes metrics.json and the reports."""
    from thinkflow.evaluate import EvalConfig, run

    cfg = resolve_config(EvalConfig, config, sets, print_config)
    use_store()
    result = run(cfg)
    scores = {k: round(v, 4) for k, v in result.metrics.items() if k.endswith("score") or k == "overall.format_rate"}
    console.print(f"[green]evaluate done[/green]: {result.output} {scores}")


@app.command("evaluate-merge")
def evaluate_merge_command(
    parts: Annotated[list[str], typer.Argument(help="Outputs (dirs or s3:// URIs) of `evaluate --set part=NAME`.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output dir or s3:// URI of the whole evaluation.")],
    print_config: PrintOpt = False,
) -> None:
    """Join the per-benchmark parts of one evaluation: the metrics.json and reports one `evaluate` task writes."""
    import json

    from thinkflow.evaluate.merge import MergeEvalConfig, run

    overrides = [f"parts={json.dumps(parts)}", f"output_dir={json.dumps(output)}"]
    cfg = resolve_config(MergeEvalConfig, None, overrides, print_config)
    use_store()
    try:
        result = run(cfg)
    except ValueError as exc:
        console.print(f"[red]evaluate-merge failed:[/red] {exc}")
        raise typer.Exit(1) from None
    scores = {k: round(v, 4) for k, v in result.metrics.items() if k.endswith("score") or k == "overall.format_rate"}
    console.print(f"[green]evaluate merged[/green]: {result.output} {scores}")


@app.command("register")
def register_command(config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False) -> None:
    """Register a model version in MLflow (description, tags, @challenger), then run the promotion gate."""
    from thinkflow.registry import RegisterConfig, register

    cfg = resolve_config(RegisterConfig, config, sets, print_config)
    use_store()
    result = register(cfg)
    made = "registered" if result.metrics.get("created") else "already registered as"
    console.print(f"[green]{made}[/green] {result.output}")
    if "gate" in result.artifacts:
        console.print(f"gate: {result.artifacts['gate']} ({result.artifacts['gate_reason']})")
    if "lineage_missing" in result.artifacts:
        console.print(f"[yellow]lineage unknown:[/yellow] {result.artifacts['lineage_missing']}")


@app.command("promote")
def promote_command(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to make @champion (an older one: the rollback).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the version description).")],
    wait_serving: Annotated[
        bool, typer.Option("--wait-serving", help="Wait until serve-sync reports the version answering.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait-serving waits.")] = 1800.0,
) -> None:
    """Move @champion to a version by hand, recording the reason; serve-sync rolls the serving Deployment."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from thinkflow.registry import promote
    from thinkflow.serving.sync import ServingError, served_history
    from thinkflow.serving.sync import wait_serving as wait

    use_store()
    client = MlflowClient()
    try:
        before = len(served_history(client.get_model_version(name, version).tags or {})) if wait_serving else 0
    except MlflowException as exc:  # the version lookup: one line, not a traceback
        raise ServingError(f"{name} version {version}: {exc}") from None
    decision = promote(name, version, reason, client=client)
    console.print(f"[green]{name} version {version} is @champion[/green] (was: {decision.champion_version or 'none'})")
    if not wait_serving:
        return
    if decision.champion_version == str(version):
        console.print(f"version {version} already held @champion: nothing new to roll out")
        return
    try:
        entry = wait(name, version, served_before=before, timeout_s=timeout, client=client)
    except ServingError as exc:
        console.print(f"[red]not served:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"[green]serving version {version}[/green] on {entry.get('deployment')} since {entry.get('at')}")


@app.command("serve-init")
def serve_init_command(config: ConfigOpt = None, sets: SetOpt = None, print_config: PrintOpt = False) -> None:
    """Resolve models:/NAME@ALIAS in MLflow and stage that version's weights (the serving init container)."""
    from thinkflow.serving.resolve import ServeInitConfig, serve_init

    cfg = resolve_config(ServeInitConfig, config, sets, print_config)
    result = serve_init(cfg)
    how = "downloaded" if result.metrics["downloaded"] else "cached"
    console.print(f"[green]serving {result.artifacts['model_uri']}[/green] ({how}) at {result.output}")


@app.command("serve-sync")
def serve_sync_command(
    config: ConfigOpt = None,
    sets: SetOpt = None,
    print_config: PrintOpt = False,
    once: Annotated[bool, typer.Option("--once", help="One pass over the watched aliases, then exit.")] = False,
) -> None:
    """Roll serving Deployments to the version their alias names; smoke-test, pause on failure, record."""
    from thinkflow.serving.sync import SyncConfig, run, sync_once

    cfg = resolve_config(SyncConfig, config, sets, print_config)
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


@models_app.command("list")
def models_list(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """Versions of a registered model with their aliases, gate decisions and key metrics (TSV when piped)."""
    from thinkflow.registry import list_versions

    use_store()
    columns = ("version", "aliases", "created", "gate", "mean score", "scores", "content")
    rows = []
    for r in list_versions(name):
        metrics = dict(r["metrics"])
        mean = metrics.pop("overall.mean_score", None)
        scores = " ".join(f"{k.removesuffix('.score')}={v:.3f}" for k, v in sorted(metrics.items()))
        aliases = ", ".join(f"@{a}" for a in r["aliases"])
        rows.append((r["version"], aliases, r["created"], r["gate"], f"{mean:.4f}" if mean is not None else "", scores,
                     r["content_hash"]))  # fmt: skip
    if not console.is_terminal:  # piped or redirected: tab-separated, one line per version, nothing cut
        for row in (columns, *rows):
            typer.echo("\t".join(row))
        return
    from rich.table import Table

    table = Table(title=name)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row[:-1], row[-1][:12])
    console.print(table)


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
