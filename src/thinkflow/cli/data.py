"""``thinkflow build`` and ``thinkflow data …``: build, merge, import, synthesize and validate datasets."""

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
    data_app,
    resolve_config,
    use_store,
)
from thinkflow.config import StageConfig


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
    explain: ExplainOpt = False,
    shard: Annotated[
        str | None, typer.Option("--shard", help="I/N: build shard I of N into --set output_dir=… (then `data merge`).")
    ] = None,
) -> None:
    """Build a dataset with the six VLAA-Thinking steps (resumable). --config tiny-data: the synthetic default."""
    import json

    from thinkflow.data.build import BuildConfig

    sets = [*(sets or []), *([f"shard={json.dumps(shard)}"] if shard else [])]
    _run_build(resolve_config(BuildConfig, config, sets, print_config, explain))


data_app.command("build", help="Same as `thinkflow build`.")(build_command)


@data_app.command("merge")
def data_merge(
    shards: Annotated[list[str], typer.Argument(help="Shard outputs (dirs or s3:// URIs) of `build --shard I/N`.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Dataset directory or s3:// URI.")],
    sets: SetOpt = None,
    print_config: PrintOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Merge the N shards of a build: dedupe across shards, split, one manifest (= the unsharded build)."""
    import json

    from thinkflow.data.build import BuildError
    from thinkflow.data.merge import MergeConfig, run

    overrides = [f"shards={json.dumps(shards)}", f"output_dir={json.dumps(output)}", *(sets or [])]
    cfg = resolve_config(MergeConfig, None, overrides, print_config, explain)
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
    explain: ExplainOpt = False,
) -> None:
    """Import the published VLAA-Thinking files (gt -> solution, ds_answer -> <think>/<answer> response)."""
    import json

    from thinkflow.data.build import BuildConfig

    sources = [{"kind": "vlaa", "json_file": f, "images": images, "max_samples": max_samples} for f in json_files]
    overrides = [f"output_dir={json.dumps(output)}", f"sources={json.dumps(sources)}", *(sets or [])]
    cfg = resolve_config(BuildConfig, config, overrides, print_config, explain)
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
