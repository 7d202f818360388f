"""A newcomer's path (issue 18): one MLflow store, one line per error, fail-fast checks, a light import.

Every bad input below must give ONE line naming the file/key/host, exit 1 (2 for usage), and leave nothing
half-made (no output folder, no MLflow run); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinkflow.cli import app
from thinkflow.cli.stages import _interrupted
from thinkflow.data.synthetic import generate

runner = CliRunner()


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def _one_line_error(result: object, code: int, *needles: str) -> str:
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == code, output  # type: ignore[attr-defined]
    lines = _error_lines(output)
    assert len(lines) == 1, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "d"
    generate(out, 10, 0)
    return out


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No MLFLOW_TRACKING_URI: commands fall back to the local default under the working directory."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / ".thinkflow" / "mlflow.db"


# --- one store ----------------------------------------------------------------------------------


def test_commands_default_to_the_run_store_and_say_so(store: Path) -> None:
    from thinkflow.tracking import local_store_uri, store_uri

    assert store_uri() == local_store_uri(".thinkflow") == f"sqlite:///{store}"
    result = runner.invoke(app, ["models", "list", "thinkflow-vlm"])
    _one_line_error(result, 1, "no registered model named 'thinkflow-vlm'")
    assert f"MLflow store: sqlite:///{store}" in result.output
    assert store.is_file()  # the registry was asked in the run's store, not ./mlflow.db
    assert not (store.parent.parent / "mlflow.db").exists()


def test_the_environment_wins(store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = runner.invoke(app, ["models", "list", "x"])
    assert f"MLflow store: {uri}" in result.output and not store.exists()


# --- light import, lazy processor registration ---------------------------------------------------


def test_import_thinkflow_and_cli_loads_no_torch_or_transformers() -> None:
    heavy = "{'torch', 'transformers'}"
    code = f"import json, sys, thinkflow, thinkflow.cli; print(json.dumps(sorted({heavy} & set(sys.modules))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_auto_processor_after_loading_is_the_full_processor(tiny_model: Path) -> None:
    code = (
        "import sys\n"
        "from thinkflow.models.load import load_processor\n"
        "from transformers import AutoProcessor\n"
        "load_processor(sys.argv[1])\n"
        "p = AutoProcessor.from_pretrained(sys.argv[1])\n"
        "print(type(p).__name__, hasattr(p, 'image_processor'), hasattr(p, 'tokenizer'))\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tiny_model)], capture_output=True, text=True, check=True)
    assert run.stdout.split()[-3:] == ["ImageQwen2_5_VLProcessor", "True", "True"]


# --- usage errors (exit 2) ---------------------------------------------------------------------


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sft", "--config", "tiny-sft", "--set", "learnig_rate=1e-3"])
    _one_line_error(result, 2, "unknown key 'learnig_rate'", "did you mean 'learning_rate'?")
    result = runner.invoke(app, ["grpo", "--config", "tiny-grpo", "--set", "reward.scorer_modle=x"])
    _one_line_error(result, 2, "reward.scorer_modle", "did you mean 'scorer_model'?", "RewardConfig")


def test_unknown_preset_suggests_the_close_one() -> None:
    result = runner.invoke(app, ["sft", "--config", "tiny-sfft"])
    _one_line_error(result, 2, "unknown preset 'tiny-sfft'", "did you mean 'tiny-sft'?")


@pytest.mark.parametrize("override", ["max_steps=-5", "seed=-1", "learning_rate=0"])
def test_nonsense_values_are_rejected_at_the_config(override: str) -> None:
    result = runner.invoke(app, ["sft", "--config", "tiny-sft", "--set", override, "--print-config"])
    _one_line_error(result, 2, repr(override.split("=")[0]))


# --- fail fast before models, runs or folders (exit 1) -------------------------------------------


def _sft_args(model: Path, data: Path | str, out: Path) -> list[str]:
    return ["sft", "-c", "tiny-sft", "--set", f"model={model}", "--set", f"data={data}", "--set", f"output_dir={out}"]


def _no_runs_in(store: Path) -> bool:
    if not store.exists():
        return True
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    return not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_json_array_data_says_expected_json_lines(tiny_model: Path, dataset: Path, tmp_path: Path, store: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    rows = [json.loads(line) for line in (dataset / "sft.jsonl").read_text().splitlines()]
    (bad / "sft.jsonl").write_text(json.dumps(rows))
    (bad / "images").symlink_to(dataset / "images")
    out = tmp_path / "out"
    line = _one_line_error(runner.invoke(app, _sft_args(tiny_model, bad, out)), 1, "expected JSON lines", "sft.jsonl")
    assert "jq -c" in line
    assert not out.exists() and _no_runs_in(store)


def test_missing_data_and_split(tiny_model: Path, dataset: Path, tmp_path: Path, store: Path) -> None:
    out = tmp_path / "out"
    _one_line_error(runner.invoke(app, _sft_args(tiny_model, tmp_path / "nope", out)), 1, str(tmp_path / "nope"))
    only_sft = tmp_path / "only-sft"
    only_sft.mkdir()
    (only_sft / "sft.jsonl").write_text((dataset / "sft.jsonl").read_text())
    args = [*_sft_args(tiny_model, only_sft, out), "--set", "split=eval"]
    _one_line_error(runner.invoke(app, args), 1, "no eval.jsonl", "splits present: sft")
    assert not out.exists() and _no_runs_in(store)


def test_model_folder_without_processor(tiny_model: Path, dataset: Path, tmp_path: Path, store: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny_model / "config.json").read_text())
    out = tmp_path / "out"
    _one_line_error(runner.invoke(app, _sft_args(bare, dataset, out)), 1, "no processor in", "save_pretrained")
    assert not out.exists() and _no_runs_in(store)


def test_unwritable_output(tiny_model: Path, dataset: Path, tmp_path: Path, store: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _one_line_error(runner.invoke(app, _sft_args(tiny_model, dataset, blocker / "out")), 1, "not writable", "a-file")
    assert _no_runs_in(store)


def test_s3_without_endpoint_does_not_fall_back_to_aws(
    tiny_model: Path, tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, _sft_args(tiny_model, "s3://bucket/data", tmp_path / "out"))
    _one_line_error(result, 1, "no S3 endpoint configured", "AWS_ENDPOINT_URL")


def test_s3_endpoint_that_does_not_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from thinkflow.storage import StorageError, check_writable

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(StorageError, match="does not answer"):
        check_writable("s3://bucket/out", "output_dir")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_submit_to_an_unreachable_host() -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    _one_line_error(runner.invoke(app, ["submit", "--host", host]), 1, host, "does not answer", "port-forward")


def test_build_with_no_records_exits_nonzero_with_reasons(tmp_path: Path) -> None:
    src = tmp_path / "src.jsonl"
    src.write_text(
        "".join(
            json.dumps(
                {"id": f"r{i}", "image": "missing.png", "question": "q?", "solution": "1", "verifier_type": "digit"}
            )
            + "\n"
            for i in range(3)
        )
    )
    (tmp_path / "imgs").mkdir()
    source = json.dumps([{"kind": "jsonl", "name": "mine", "path": str(src), "images": str(tmp_path / "imgs")}])
    args = ["build", "--set", f"output_dir={tmp_path / 'out'}", "--set", "tracking=false", "--set", f"sources={source}"]
    _one_line_error(runner.invoke(app, args), 1, "no records built", "3×", "rejected.jsonl")


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from thinkflow.config import ConfigError

    monkeypatch.setenv("THINKFLOW_DEBUG", "0")  # recorded, so what --debug sets is undone after the test
    assert "error:" in runner.invoke(app, ["sft", "--config", "tiny-sfft"]).output
    result = runner.invoke(app, ["--debug", "sft", "--config", "tiny-sfft"])
    assert isinstance(result.exception, ConfigError)
    monkeypatch.setenv("THINKFLOW_DEBUG", "1")
    result = runner.invoke(app, ["sft", "--config", "tiny-sfft"])
    assert isinstance(result.exception, ConfigError)


def test_ctrl_c_names_the_last_checkpoint_and_the_resume_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    monkeypatch.setattr(sys, "argv", ["thinkflow", "sft", "--config", "tiny-sft"])
    with pytest.raises(typer.Exit) as exit_info:
        _interrupted(tmp_path)
    assert exit_info.value.exit_code == 130
    err = " ".join(capsys.readouterr().err.split())
    assert f"last checkpoint: {ckpt}" in err and "resume with: thinkflow sft --config tiny-sft" in err


def test_nested_params_are_checked_at_run_time(tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("grpo_overrides: {max_stepz: 3}\n")
    result = runner.invoke(
        app, ["run", "--root", str(tmp_path / "root"), "--model", str(tmp_path), "--params", str(params)]
    )
    _one_line_error(result, 2, "grpo_overrides", "unknown key 'max_stepz'", "did you mean 'max_steps'?")
    assert not (tmp_path / "root" / "pipeline-root").exists()  # no task started
