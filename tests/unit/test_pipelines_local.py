"""The local runner's arguments and summary, and the thin `thinkflow run` command (the whole local run is
in tests/e2e/test_local_run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from thinkflow.cli import app
from thinkflow.pipelines import build
from thinkflow.pipelines.local import LocalRunError, LocalRunResult, local_arguments, render_summary


def inputs(name: str) -> set[str]:
    return set(build(name, local=True).component_spec.inputs or {})


def test_embedded_default_arguments() -> None:
    args = local_arguments("vlaa_thinker", "/m/tiny", inputs("vlaa_thinker"))
    assert args == {
        "model": "/m/tiny",
        "data_preset": "tiny-data",
        "grpo_preset": "tiny-grpo",
        "grpo_overrides": {"reward": {"scorer_model": "/m/tiny"}},
        "eval_preset": "tiny-eval",
        "eval_overrides": {"reward": {"scorer_model": "/m/tiny"}, "base_model": "lineage"},
    }
    study = local_arguments("sft_vs_rl_study", "/m/tiny", inputs("sft_vs_rl_study"))
    assert study["sft_preset"] == "tiny-sft"


def test_user_arguments_merge_into_the_default() -> None:
    args = local_arguments(
        "sft_then_grpo",
        "/m/tiny",
        inputs("sft_then_grpo"),
        {"grpo_overrides": {"max_steps": 8, "reward": {"beta": 0.5}}, "eval_gpus": "0", "data_preset": "mine.yaml"},
    )
    assert args["grpo_overrides"] == {"max_steps": 8, "reward": {"scorer_model": "/m/tiny", "beta": 0.5}}
    assert args["data_preset"] == "mine.yaml" and args["eval_gpus"] == "0"
    with pytest.raises(ValueError, match=r"unknown pipeline parameter.*recipes"):
        local_arguments("vlaa_thinker", "/m/tiny", inputs("vlaa_thinker"), {"recipes": ["grpo"]})


def result(**extra: Any) -> LocalRunResult:
    base: dict[str, Any] = dict(
        pipeline="vlaa_thinker",
        root="/r",
        state="SUCCEEDED",
        parent_run_id="abc123",
        experiment="thinkflow-local",
        tracking_uri="sqlite:////r/mlflow.db",
        pipeline_root="/r/pipeline-root",
        wall_s=97.0,
        metrics={"evaluate.overall.mean_score": 0.4375, "grpo.reward": 0.1, "register.version": 2.0},
        report="/r/pipeline-root/x/evaluate/results/report.md",
        registered={"name": "thinkflow-vlm", "version": "2", "alias": "challenger", "gate": "kept"},
    )
    base.update(extra)
    return LocalRunResult(**base)


def test_summary_shows_metrics_report_and_registration() -> None:
    console = Console(width=200, record=True)
    console.print(render_summary(result()))
    text = console.export_text()
    assert "vlaa_thinker (SUCCEEDED, 97s)" in text
    assert "report      /r/pipeline-root/x/evaluate/results/report.md" in text
    assert "thinkflow-vlm version 2 @challenger (gate: kept)" in text
    assert "evaluate.overall.mean_score" in text and "0.4375" in text
    assert "grpo.reward" not in text  # training internals stay in MLflow


def test_study_summary_prints_the_comparison(tmp_path: Path) -> None:
    table = tmp_path / "comparison.md"
    table.write_text("| Recipe | Avg |\n|---|---|\n| GRPO | 12.5 |\n")
    console = Console(width=200, record=True)
    study = result(pipeline="sft_vs_rl_study", report=None, registered=None, comparison=str(table))
    console.print(render_summary(study))
    text = console.export_text()
    assert f"comparison  {table}" in text
    assert "GRPO" in text and "12.5" in text


def test_cli_run_is_thin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import thinkflow.pipelines.local as local

    calls: list[tuple[Any, ...]] = []

    def fake(pipeline: str, root: Path, arguments: Any = None, *, model: Any = None) -> LocalRunResult:
        calls.append((pipeline, root, arguments, model))
        return result()

    monkeypatch.setattr(local, "run_local", fake)
    params = tmp_path / "p.yaml"
    params.write_text("grpo_overrides: {max_steps: 8}\n")
    res = CliRunner().invoke(app, ["run", "-p", "sft_then_grpo", "--root", str(tmp_path), "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert calls == [("sft_then_grpo", tmp_path, {"grpo_overrides": {"max_steps": 8}}, None)]
    assert "ThinkFlow run summary" in res.output

    def failing(*args: Any, **kwargs: Any) -> LocalRunResult:
        raise LocalRunError("Inner task failed: 'grpo'")

    monkeypatch.setattr(local, "run_local", failing)
    res = CliRunner().invoke(app, ["run"])
    assert res.exit_code == 1 and "error: Inner task failed: 'grpo'" in res.output


def test_summary_shows_before_after_and_the_gate_reason() -> None:
    from rich.console import Console

    from thinkflow.pipelines.local import before_after

    metrics = {
        "evaluate.overall.format_rate": 0.75,
        "evaluate.base.overall.format_rate": 0.5,
        "evaluate.overall.mean_reward": 0.4,
        "evaluate.base.overall.mean_reward": 0.3,
        "evaluate.verifier.digit.accuracy": 0.6,
        "evaluate.base.verifier.digit.accuracy": 0.6,
        "evaluate.overall.n": 16.0,
        "evaluate.base.overall.n": 16.0,
    }
    table = before_after(metrics)
    assert table.row_count == 3  # n is not a before/after figure
    console = Console(width=200, record=True)
    reg = {"name": "m", "version": "1", "alias": "challenger", "gate": "rejected", "gate_reason": "does not beat"}
    console.print(render_summary(result(metrics=metrics, registered=reg)))
    text = console.export_text()
    assert "format_rate" in text and "0.500" in text and "0.750" in text and "+0.250" in text
    assert "digit.accuracy" in text and "+0.000" in text
    assert "does not beat" in text and "@challenger" in text


def test_task_output_keeps_everything_in_the_log_and_shows_no_noise() -> None:
    import io

    from thinkflow.pipelines.local import TaskOutput

    console, log = io.StringIO(), io.StringIO()
    out = TaskOutput(console, log)
    text = (
        "\x1b[96m'grpo'\x1b[0m task started\n"
        "[WARNING] [real_accelerator.py:213:get_accelerator] Setting accelerator to CPU.\n"
        "/x/y.py:3: FutureWarning: `foo` is deprecated\n"
        "  warnings.warn(\n"
        'INFO:root:Got executor_input:\n{\n    "inputs": {\n        "a": 1\n    }\n}\n'
        "grpo finished at global_step 4\n"
    )
    out.write(text[:40])
    out.write(text[40:])
    assert log.getvalue() == text
    assert console.getvalue() == "'grpo' task started\ngrpo finished at global_step 4\n"


def test_task_output_writes_one_log_file_per_task(tmp_path: Path) -> None:
    """kfp.local runs one task at a time and announces each with "Executing task 'NAME'" (the name in colour codes,
    kfp/local/task_dispatcher.py): each task's lines go to their own file, the whole run's to the run log."""
    import io

    from thinkflow.pipelines.local import TaskOutput

    console, log = io.StringIO(), io.StringIO()
    out = TaskOutput(console, log, tmp_path)
    out.write("12:00:00.000 - INFO - Executing task \x1b[96m'preflight'\x1b[0m\nchecked 0\n")
    out.write("12:00:01.000 - INFO - Executing task \x1b[96m'grpo'\x1b[0m\nstep 1\n")
    out.write("step 2\n")
    out.close_task()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-preflight.log", "02-grpo.log"]
    assert (tmp_path / "02-grpo.log").read_text().splitlines()[1:] == ["step 1", "step 2"]
    assert out.task_log == tmp_path / "02-grpo.log"
    assert "checked 0" in log.getvalue() and "\x1b[" not in console.getvalue()


def test_summary_says_where_the_logs_are() -> None:
    console = Console(width=200, record=True)
    console.print(render_summary(result(logs="/r/logs/vlaa_thinker-20261202-120000")))
    assert "/r/logs/vlaa_thinker-20261202-120000 (run.log, one file per task)" in console.export_text()
