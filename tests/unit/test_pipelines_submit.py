"""`thinkflow submit`: what is sent to kfp.Client, recorded by a fake client whose every call is checked
against the real `kfp.Client` method signatures, and the package it uploads parsed as a PipelineSpec.
(No KFP server here: the server side is not exercised.)"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kfp
import pytest
from typer.testing import CliRunner

from thinkflow.cli import app
from thinkflow.pipelines import load_package, remote, submit
from thinkflow.pipelines.remote import SubmitError, check_params, normalize_cron, read_params, version_name

REAL_CLIENT = kfp.Client


class RecordingClient:
    """Stands in for kfp.Client: records each call (validated against kfp.Client's signature)."""

    def __init__(self, pipeline_id: str | None = None, versions: dict[str, str] | None = None) -> None:
        self.pipeline_id = pipeline_id
        self.versions = dict(versions or {})  # version name -> id
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.packages: list[Any] = []

    def _record(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = inspect.signature(getattr(REAL_CLIENT, method)).bind(None, *args, **kwargs)
        arguments = dict(bound.arguments)
        arguments.pop("self")
        self.calls.append((method, arguments))
        return arguments

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def call(self, method: str) -> dict[str, Any]:
        (args,) = [a for name, a in self.calls if name == method]
        return args

    def get_pipeline_id(self, *args: Any, **kwargs: Any) -> str | None:
        self._record("get_pipeline_id", *args, **kwargs)
        return self.pipeline_id

    def upload_pipeline(self, *args: Any, **kwargs: Any) -> Any:
        a = self._record("upload_pipeline", *args, **kwargs)
        self.packages.append(load_package(a["pipeline_package_path"])[0])
        self.pipeline_id = "pipe-1"
        return SimpleNamespace(pipeline_id="pipe-1")

    def list_pipeline_versions(self, *args: Any, **kwargs: Any) -> Any:
        a = self._record("list_pipeline_versions", *args, **kwargs)
        wanted = json.loads(a["filter"])["predicates"][0]["stringValue"] if a.get("filter") else None
        found = [SimpleNamespace(pipeline_version_id=v, display_name=k) for k, v in self.versions.items()]
        return SimpleNamespace(pipeline_versions=[f for f in found if wanted in (None, f.display_name)] or None)

    def upload_pipeline_version(self, *args: Any, **kwargs: Any) -> Any:
        a = self._record("upload_pipeline_version", *args, **kwargs)
        self.packages.append(load_package(a["pipeline_package_path"])[0])
        self.versions[a["pipeline_version_name"]] = "ver-2"
        return SimpleNamespace(pipeline_version_id="ver-2", pipeline_id=a["pipeline_id"])

    def create_experiment(self, *args: Any, **kwargs: Any) -> Any:
        self._record("create_experiment", *args, **kwargs)
        return SimpleNamespace(experiment_id="exp-1")

    def run_pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self._record("run_pipeline", *args, **kwargs)
        return SimpleNamespace(run_id="run-1")

    def create_recurring_run(self, *args: Any, **kwargs: Any) -> Any:
        self._record("create_recurring_run", *args, **kwargs)
        return SimpleNamespace(recurring_run_id="rec-1")


def test_first_submit_creates_pipeline_version_experiment_and_run() -> None:
    client = RecordingClient()
    result = submit(
        "http://kfp.example:8080/",
        "vlaa_thinker",
        {"grpo_overrides": {"learning_rate": 1e-6}, "gpus_per_task": 4},
        experiment="vlaa",
        run_name="try-1",
        client=client,
    )
    assert client.names() == [
        "get_pipeline_id",
        "upload_pipeline",
        "upload_pipeline_version",
        "create_experiment",
        "run_pipeline",
    ]
    assert client.call("get_pipeline_id") == {"name": "vlaa-thinker"}
    assert client.call("upload_pipeline")["pipeline_name"] == "vlaa-thinker"
    version = client.call("upload_pipeline_version")
    assert version["pipeline_id"] == "pipe-1"
    assert version["pipeline_version_name"].startswith("vlaa-thinker-")
    assert client.call("create_experiment") == {"name": "vlaa", "namespace": None}
    run = client.call("run_pipeline")
    assert run == {
        "experiment_id": "exp-1",
        "job_name": "try-1",
        # a number for a STRING parameter is sent as its string (KFP reads GPU counts with GetStringValue)
        "params": {"grpo_overrides": {"learning_rate": 1e-6}, "gpus_per_task": "4"},
        "pipeline_id": "pipe-1",
        "version_id": "ver-2",
        "enable_caching": None,
        "service_account": None,
    }
    # What was uploaded is the pipeline's IR, parsed as a PipelineSpec.
    assert [p.pipeline_info.name for p in client.packages] == ["vlaa-thinker", "vlaa-thinker"]
    assert result.url == "http://kfp.example:8080/#/runs/details/run-1"
    assert result.run_id == "run-1" and result.recurring_run_id is None


def test_same_package_reuses_the_version_and_recurring_run_uses_6_field_cron(tmp_path: Path) -> None:
    from thinkflow.pipelines import compile_pipeline

    package = compile_pipeline("sft_vs_rl_study", tmp_path / "study.yaml")
    vname = version_name("sft-vs-rl-study", package)
    client = RecordingClient(pipeline_id="pipe-9", versions={vname: "ver-9"})
    result = submit(
        "http://kfp:8080",
        "sft-vs-rl-study",
        {"recipes": ["grpo", "sft"]},
        recurring="0 3 * * 1",
        enable_caching=False,
        namespace="team-a",
        client=client,
    )
    assert "upload_pipeline" not in client.names() and "upload_pipeline_version" not in client.names()
    rec = client.call("create_recurring_run")
    assert rec["cron_expression"] == "0 0 3 * * 1"
    assert rec["version_id"] == "ver-9" and rec["pipeline_id"] == "pipe-9"
    assert rec["enable_caching"] is False and rec["max_concurrency"] == 1 and rec["no_catchup"] is True
    assert rec["params"] == {"recipes": ["grpo", "sft"]}
    assert client.call("create_experiment")["namespace"] == "team-a"
    assert result.url == "http://kfp:8080/#/recurringrun/details/rec-1"
    assert result.version_name == vname


def test_bad_arguments_fail_before_anything_is_sent(tmp_path: Path) -> None:
    client = RecordingClient()
    with pytest.raises(SubmitError, match="unknown pipeline parameter 'learning_rate'"):
        submit("http://kfp", "vlaa_thinker", {"learning_rate": 1e-6}, client=client)
    with pytest.raises(SubmitError, match="'gpus_per_task' expects STRING"):
        submit("http://kfp", "vlaa_thinker", {"gpus_per_task": [8]}, client=client)
    with pytest.raises(SubmitError, match="5 or 6 fields"):
        submit("http://kfp", "vlaa_thinker", recurring="@daily", client=client)
    with pytest.raises(ValueError, match="unknown pipeline 'nope'"):
        submit("http://kfp", "nope", client=client)
    assert not [n for n in client.names() if n not in ("get_pipeline_id",)]


def test_params_file_and_cron() -> None:
    assert normalize_cron("*/5 * * * *") == "0 */5 * * * *"
    assert normalize_cron("0 0 3 * * *") == "0 0 3 * * *"


def test_read_params(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("model: s3://models/qwen\ngrpo_overrides:\n  learning_rate: 1.0e-6\n")
    assert read_params(f) == {"model": "s3://models/qwen", "grpo_overrides": {"learning_rate": 1e-6}}
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(SubmitError, match="expected a mapping"):
        read_params(tmp_path / "list.yaml")
    with pytest.raises(SubmitError, match="not found"):
        read_params(tmp_path / "missing.yaml")


def test_check_params_types(tmp_path: Path) -> None:
    from thinkflow.pipelines import compile_pipeline

    package = compile_pipeline("vlaa_thinker", tmp_path / "v.yaml")
    sent = check_params(package, {"gpu_tolerations": [], "gpu_node_selector": {"a": "b"}, "eval_gpus": 0})
    assert sent == {"gpu_tolerations": [], "gpu_node_selector": {"a": "b"}, "eval_gpus": "0"}
    with pytest.raises(SubmitError, match="'eval_gpus' expects STRING, got bool"):
        check_params(package, {"eval_gpus": True})
    with pytest.raises(SubmitError, match="'gpu_tolerations' expects LIST"):
        check_params(package, {"gpu_tolerations": {"key": "x"}})


def test_cli_submit_prints_the_run_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[RecordingClient] = []

    def factory(host: str | None = None, **kwargs: Any) -> RecordingClient:
        inspect.signature(REAL_CLIENT).bind(host=host, **kwargs)
        made.append(RecordingClient())
        made[-1].host = host  # type: ignore[attr-defined]
        return made[-1]

    monkeypatch.setattr(kfp, "Client", factory)
    monkeypatch.setattr(remote, "check_host", lambda host: None)  # the recording client stands in for the host
    params = tmp_path / "params.yaml"
    params.write_text("eval_gpus: 2\n")
    res = CliRunner().invoke(
        app,
        ["submit", "--host", "http://kfp.local:8080", "-p", "sft_then_grpo", "--params", str(params), "--no-cache"],
    )
    assert res.exit_code == 0, res.output
    assert "http://kfp.local:8080/#/runs/details/run-1" in res.output
    (client,) = made
    assert client.host == "http://kfp.local:8080"  # type: ignore[attr-defined]
    run = client.call("run_pipeline")
    assert run["params"] == {"eval_gpus": "2"} and run["enable_caching"] is False
    bad = CliRunner().invoke(app, ["submit", "--host", "http://x", "--params", str(tmp_path / "none.yaml")])
    assert bad.exit_code == 2 and "parameters file not found" in bad.output


def test_cli_compile(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["compile", "-o", str(tmp_path), "--registry", "reg.io/x", "--tag", "9"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["sft_then_grpo.yaml", "sft_vs_rl_study.yaml", "vlaa_thinker.yaml"]
    assert "reg.io/x/thinkflow-trainer:9" in (tmp_path / "vlaa_thinker.yaml").read_text()
