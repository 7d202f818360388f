"""Run a whole pipeline on this machine with ``kfp.local`` (``thinkflow run``, ``make run``).

The embedded default: the synthetic dataset (preset ``tiny-data``), the tiny random Qwen2.5-VL built
offline (`thinkflow.models.tiny`), the ``tiny-*`` training and evaluation presets, MLflow in a sqlite
store under the root, and every artifact under the root (default ``./.thinkflow``):

    .thinkflow/
      mlflow.db                 MLflow tracking + registry (sqlite); every command's default store
      mlartifacts/              MLflow artifacts (models, reports)
      tiny/                     the tiny base model (built once)
      pipeline-root/            KFP artifacts, one folder per pipeline run and task
      workspace/                the per-run workspace (checkpoints), removed by kfp.local after the run
      logs/<pipeline>-<time>/   the run's full output (run.log) and each task's (NN-<task>.log); the console
                                shows it without third-party noise
      tiny-warm/, warm-data/    the tiny model after its SFT warm start, and the warm start's data (built once)
      cache/                    downloads (THINKFLOW_CACHE)

Tasks run as subprocesses of this interpreter (``SubprocessRunner(use_venv=False)``), so the installed
``thinkflow`` is what runs. The pipelines are built with ``local=True``: no Kubernetes platform config
(secrets, node selectors, tolerations, ``/dev/shm``, pod labels), no resource requests (``kfp.local``
cannot resolve resource placeholders) and no retries; the workspace is kept (``kfp.local`` maps it to a
local folder). The local runner creates the MLflow parent run itself and hands its id to the tasks in
``THINKFLOW_PARENT_RUN_ID``; at the end it reads the summary back from that run.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from thinkflow import env, storage
from thinkflow.config import deep_merge, read_preset
from thinkflow.errors import ThinkFlowError
from thinkflow.pipelines.common import LOCAL_PRESETS, PipelineOptions, check_overrides
from thinkflow.pipelines.registry import DISPLAY_NAMES, build, check_name
from thinkflow.tracking import DEFAULT_ROOT, TAG_OUTPUT, TAG_REGISTERED, TAG_STATE, artifact_location, store_uri

log = logging.getLogger("thinkflow.pipelines")

DEFAULT_EXPERIMENT = "thinkflow-local"
TINY_MODEL_DIR = Path("tiny")  # where the tiny-* presets look for it (.thinkflow/tiny)


class LocalRunError(ThinkFlowError, RuntimeError):
    """A local pipeline run that failed; the message names the failed task and the MLflow run."""


class LocalRunResult(BaseModel):
    """What ``thinkflow run`` prints at the end."""

    pipeline: str
    root: str
    state: str
    parent_run_id: str
    experiment: str
    tracking_uri: str
    pipeline_root: str
    wall_s: float
    metrics: dict[str, float] = {}
    outputs: dict[str, str] = {}
    report: str | None = None
    comparison: str | None = None
    registered: dict[str, str] | None = None
    logs: str | None = None  # the folder of the run's log files


def tiny_model(root: Path) -> Path:
    """The tiny base model under ``root`` (built offline once, then reused)."""
    from thinkflow.models.tiny import build_tiny

    path = root / TINY_MODEL_DIR
    if not (path / "config.json").is_file():
        build_tiny(path, family="qwen2.5-vl", seed=0)
    return path


WARM_MODEL_DIR = Path("tiny-warm")  # the tiny model after the SFT warm start (built once, then reused)
WARM_DATA_DIR = Path("warm-data")  # its synthetic SFT data (another seed than the pipeline's dataset)
# The warm start measured in issue 18: 200 SFT steps, lr 3e-3, batch 8 on the synthetic SFT split teach the
# tiny random model the <think>/<answer> format, so GRPO's rule rewards are not all zero. Good, not saturated
# (measured 2026-12-02 on tiny-data's 50-sample eval split: format rate 0.10 after 100 steps, 0.50 after 200):
# GRPO (tiny-grpo) has variance in its groups to exploit and raises it (tests/e2e/test_demo_learns.py).
WARM_START = {"max_steps": 200, "learning_rate": 3e-3, "per_device_train_batch_size": 8, "scenes": 300, "seed": 1}


def warm_model(root: Path) -> Path:
    """The tiny model after a short SFT warm start on synthetic SFT records, under ``root`` (built once).

    A random model scores 0 on every rule reward, so GRPO has nothing to learn from; the warm start gives
    it a format to improve on. The SFT run is recorded in the MLflow store like any other stage.
    """
    from thinkflow.data.synthetic import generate
    from thinkflow.train import sft

    path = root / WARM_MODEL_DIR
    if (path / "lineage.json").is_file():
        return path
    base = tiny_model(root)
    data = root / WARM_DATA_DIR
    if not (data / "manifest.json").is_file():
        generate(str(data), int(WARM_START["scenes"]), int(WARM_START["seed"]))
    cfg = sft.SFTConfig.model_validate(
        {
            **read_preset(LOCAL_PRESETS["sft"]),
            "model": str(base),
            "data": str(data),
            "output_dir": str(path),
            "max_steps": WARM_START["max_steps"],
            "learning_rate": WARM_START["learning_rate"],
            "per_device_train_batch_size": WARM_START["per_device_train_batch_size"],
            "save_steps": WARM_START["max_steps"],
            "lr_scheduler_type": "constant",
            "seed": 0,
        }
    )
    log.info("warm start: SFT of the tiny model on %s (once; cached in %s)", data, path)
    sft.run(cfg)
    return path


def default_arguments(pipeline: str, model: str) -> dict[str, Any]:
    """The embedded default's pipeline arguments: the tiny presets and the tiny model, which is also the
    stand-in reward model that scores open-ended answers (the presets name it by a relative path)."""
    args: dict[str, Any] = {
        "model": model,
        "data_preset": LOCAL_PRESETS["data"],
        "grpo_preset": LOCAL_PRESETS["grpo"],
        "grpo_overrides": {"reward": {"scorer_model": model}},
        "eval_preset": LOCAL_PRESETS["eval"],
        # base_model: the model GRPO started from is evaluated on the same samples: the summary's "before"
        "eval_overrides": {"reward": {"scorer_model": model}, "base_model": "lineage"},
    }
    if pipeline in ("sft_then_grpo", "sft_vs_rl_study"):
        args["sft_preset"] = LOCAL_PRESETS["sft"]
    return args


def local_arguments(
    pipeline: str, model: str, inputs: set[str], arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The embedded default's arguments with the user's on top (``*_overrides`` dicts merged key by key);
    an argument that is not a parameter of the pipeline is an error naming it."""
    args = {k: v for k, v in default_arguments(pipeline, model).items() if k in inputs}
    for name, value in (arguments or {}).items():
        if isinstance(value, dict) and isinstance(args.get(name), dict):
            args[name] = deep_merge(copy.deepcopy(args[name]), value)
        else:
            args[name] = value
    unknown = sorted(set(args) - inputs)
    if unknown:
        raise ValueError(
            f"unknown pipeline parameter(s) for {pipeline}: {', '.join(unknown)}; known: {', '.join(sorted(inputs))}"
        )
    return args


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _experiment_id(client: Any, name: str, tracking: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location(tracking)))


# Task output that tells a user nothing (it stays in the run's log file under <root>/logs).
NOISE = re.compile(
    r"real_accelerator\.py|Setting accelerator to|(Future|User|Deprecation)Warning|^\s*warnings\.warn\(|"
    r"Wrote executor output file|Looking for component|Loading KFP component|^\s*$"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK_START = re.compile(r"Executing task '([^']+)'")  # kfp/local/task_dispatcher.py: one task at a time


class TaskOutput(io.TextIOBase):
    """``sys.stdout`` while kfp.local runs the tasks: every line goes to the log file as is, and with ``task_dir``
    also to the current task's file (``NN-<task>.log``, opened at kfp.local's "Executing task" line); the console
    gets the lines without third-party noise (accelerator banners, warnings, the executor's JSON) or colour codes."""

    def __init__(self, console: Any, log_file: Any, task_dir: Path | None = None) -> None:
        self.console, self.log_file, self.pending, self.depth = console, log_file, "", 0
        self.task_dir, self.tasks = task_dir, 0
        self.task_file: Any = None
        self.task_log: Path | None = None  # the current (at the end: the last) task's log file

    def write(self, text: str) -> int:
        self.log_file.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._task(line)
            self._show(line)
        return len(text)

    def _task(self, line: str) -> None:
        if self.task_dir is None:
            return
        started = TASK_START.search(ANSI.sub("", line))
        if started:
            self.close_task()
            self.tasks += 1
            self.task_log = self.task_dir / f"{self.tasks:02d}-{started.group(1)}.log"
            self.task_file = open(self.task_log, "w", encoding="utf-8")  # noqa: SIM115 (closed at the next task)
        if self.task_file is not None:
            self.task_file.write(line + "\n")

    def close_task(self) -> None:
        """Close the current task's log file (the next task, or the end of the run)."""
        if self.task_file is not None:
            self.task_file.close()
            self.task_file = None

    def _show(self, line: str) -> None:
        plain = ANSI.sub("", line)
        if "Got executor_input" in plain:  # a multi-line JSON document follows: skip it to its closing brace
            self.depth = -1
            return
        if self.depth:
            opened = plain.count("{") - plain.count("}")
            self.depth = (opened or -1) if self.depth == -1 else self.depth + opened
            return
        if not NOISE.search(plain):
            self.console.write(plain + "\n")

    def flush(self) -> None:
        self.log_file.flush()
        self.console.flush()


def run_local(
    pipeline: str = "vlaa_thinker",
    root: str | Path = DEFAULT_ROOT,
    arguments: dict[str, Any] | None = None,
    *,
    model: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    options: PipelineOptions | None = None,
) -> LocalRunResult:
    """Run ``pipeline`` end to end with ``kfp.local`` and return its summary.

    ``arguments`` override pipeline parameters on top of the embedded default (``*_overrides`` dicts are
    merged key by key with the default's); ``model`` replaces the tiny base model; the MLflow store is
    ``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the sqlite store under ``root`` (`tracking.store_uri`).
    """
    from kfp import local
    from mlflow.tracking import MlflowClient

    key = check_name(pipeline)
    started = time.monotonic()
    base = Path(root).resolve()
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    tracking = tracking_uri or store_uri(base)
    workspace = base / "workspace" / f"{key}-{stamp}"
    task_env = {
        env.MLFLOW_TRACKING_URI: tracking,
        env.MLFLOW_EXPERIMENT_NAME: experiment,
        env.CACHE: str(base / "cache"),
        env.WORKSPACE: str(workspace),
        # Nothing comes from a model hub in the local run.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    with _environ(task_env):
        model_path = model or str(warm_model(base))
        graph = build(key, (options or PipelineOptions()).model_copy(update={"study_parallelism": 1}), local=True)
        args = local_arguments(key, model_path, set(graph.component_spec.inputs or {}), arguments)
        args.setdefault("experiment", experiment)
        check_overrides(args)  # a wrong key in *_overrides fails now, not minutes later inside a task
        # Explicit URI: an earlier mlflow.set_tracking_uri() in this process must not redirect the parent run.
        client = MlflowClient(tracking_uri=tracking)
        exp_id = _experiment_id(client, args.get("experiment", experiment), tracking)
        parent = client.create_run(exp_id, run_name=f"{DISPLAY_NAMES[key]}-{stamp}", tags={"thinkflow.local": "true"})
        parent_id = parent.info.run_id
        with _environ({env.PARENT_RUN_ID: parent_id}):
            local.init(
                runner=local.SubprocessRunner(use_venv=False),
                pipeline_root=str(base / "pipeline-root"),
                workspace_root=str(workspace),
                raise_on_error=True,
            )
            failure: str | None = None
            log_dir = base / "logs" / f"{key}-{stamp}"
            log_dir.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings(), open(log_dir / "run.log", "w", encoding="utf-8") as log_file:
                output = TaskOutput(sys.stdout, log_file, log_dir)
                # SubprocessRunner warns that our images' names do not contain "python": they run here.
                warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
                try:
                    with contextlib.redirect_stdout(output):
                        graph(**args)
                except RuntimeError as exc:
                    failure = str(exc)
                finally:
                    output.close_task()
        run = client.get_run(parent_id)
        if run.info.status == "RUNNING":  # the exit handler did not run (e.g. the graph failed to start)
            client.set_terminated(parent_id, status="FAILED" if failure else "FINISHED")
            run = client.get_run(parent_id)
        experiment_name = client.get_experiment(run.info.experiment_id).name
    result = summarize(key, run, experiment_name, base=base, tracking=tracking, wall_s=time.monotonic() - started)
    if failure:
        last = f"; the failed task's output: {output.task_log}" if output.task_log else ""
        raise LocalRunError(
            f"{failure}\nMLflow parent run {parent_id} ({tracking}); task logs in {log_dir}{last}; artifacts under "
            f"{base / 'pipeline-root'}"
        )
    return result.model_copy(update={"logs": str(log_dir)})


def summarize(pipeline: str, run: Any, experiment: str, *, base: Path, tracking: str, wall_s: float) -> LocalRunResult:
    """The summary of a pipeline run, read from its MLflow parent run's metrics and tags."""
    tags: dict[str, str] = dict(run.data.tags)
    out_prefix, reg_prefix = TAG_OUTPUT + ".", TAG_REGISTERED + "."
    outputs = {k.removeprefix(out_prefix): v for k, v in tags.items() if k.startswith(out_prefix)}
    reports = sorted(v for k, v in outputs.items() if k.endswith("evaluate.report"))
    registered = {k.removeprefix(reg_prefix): v for k, v in tags.items() if k.startswith(reg_prefix)}
    return LocalRunResult(
        pipeline=pipeline,
        root=str(base),
        state=tags.get(TAG_STATE, run.info.status),
        parent_run_id=run.info.run_id,
        experiment=experiment,
        tracking_uri=tracking,
        pipeline_root=str(base / "pipeline-root"),
        wall_s=round(wall_s, 1),
        metrics=dict(run.data.metrics),
        outputs=outputs,
        report=reports[0] if len(reports) == 1 else None,
        comparison=outputs.get("compare_study.table"),
        registered=registered or None,
    )


BEFORE_AFTER = ("format_rate", "accuracy", "mean_reward", "mean_score")


def before_after(metrics: dict[str, float]) -> Any:
    """A table of the base model (before) and the trained model (after) on the same samples: format rate,
    accuracy per verifier type and mean reward, from the evaluation's ``base.*`` metrics."""
    from rich.table import Table

    table = Table(title="before -> after (same eval samples)")
    for col, justify in (("metric", "left"), ("before", "right"), ("after", "right"), ("change", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for key in sorted(metrics):
        prefix, sep, rest = key.partition("evaluate.base.")
        if not sep:
            continue
        after_key = f"{prefix}evaluate.{rest}"
        leaf = rest.rsplit(".", 1)[-1]
        if after_key not in metrics or leaf not in BEFORE_AFTER:
            continue
        before, after = metrics[key], metrics[after_key]
        label = f"{prefix}{rest.removeprefix('overall.')}"
        table.add_row(label, f"{before:.3f}", f"{after:.3f}", f"{after - before:+.3f}")
    return table


def render_summary(result: LocalRunResult) -> Any:
    """A rich renderable of the summary (metrics, report, registered version and alias)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row("pipeline", f"{result.pipeline} ({result.state}, {result.wall_s:.0f}s)")
    head.add_row("MLflow", f"run {result.parent_run_id} (experiment {result.experiment}) in {result.tracking_uri}")
    head.add_row("artifacts", result.pipeline_root)
    if result.logs:
        head.add_row("logs", f"{result.logs} (run.log, one file per task)")
    if result.report:
        head.add_row("report", result.report)
    else:
        for key, value in sorted(result.outputs.items()):
            if key.endswith("evaluate.report"):
                head.add_row(f"report ({key.split('/')[0]})", value)
    if result.comparison:
        head.add_row("comparison", result.comparison)
    if result.registered:
        reg = result.registered
        alias = f" @{reg['alias']}" if reg.get("alias") else ""
        gate = f" (gate: {reg['gate']})" if reg.get("gate") else ""
        head.add_row("registered", f"{reg.get('name')} version {reg.get('version')}{alias}{gate}")
        if reg.get("gate_reason"):
            head.add_row("gate", reg["gate_reason"])
    table = Table(title="metrics", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, number in sorted(result.metrics.items()):
        if name.startswith("evaluate.") or "/evaluate.overall." in name:
            table.add_row(name, f"{number:.4g}")
    parts: list[Any] = [Text("ThinkFlow run summary", style="bold green"), head]
    change = before_after(result.metrics)
    if change.row_count:
        parts.append(change)
    if table.row_count:
        parts.append(table)
    if result.comparison and not storage.is_remote(result.comparison) and Path(result.comparison).is_file():
        from rich.markdown import Markdown

        parts.append(Markdown(Path(result.comparison).read_text(encoding="utf-8")))
    return Group(*parts)
