"""serve-sync's pure decision, the Deployment bookkeeping it reads and writes, and serve-init's URI rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from thinkflow.cli import app
from thinkflow.serving.resolve import ServingError, parse_model_uri, served_name, version_from_model_id
from thinkflow.serving.smoke import SmokeResult
from thinkflow.serving.sync import (
    FAILED_TAG,
    ROLLOUT_ANNOTATION,
    SERVED_ANNOTATION,
    SERVED_AT_TAG,
    VERSION_ANNOTATION,
    DeploymentState,
    Observation,
    _append_history,
    decide,
    deployment_patch,
    deployment_state,
    served_history,
)

TIMEOUT = 600.0


def dep(template: str | None = "2", served: str | None = "1", paused: bool = False, complete: bool = True,
        started: float | None = 1000.0) -> DeploymentState:  # fmt: skip
    return DeploymentState(template, served, paused, complete, started, resource_version="7")


def obs(version: str | None, d: DeploymentState, *, failed: str | None = None, now: float = 1010.0,
        smoke: SmokeResult | None = None) -> Observation:  # fmt: skip
    return Observation(version, failed, d, now, smoke)


@pytest.mark.parametrize(
    ("observation", "action"),
    [
        (obs("2", dep(template="1")), "roll"),  # the alias moved
        (obs("1", dep(template="2", served="2")), "roll"),  # moved back: the rollback
        (obs("2", dep(template=None, served=None)), "roll"),  # first sync after install
        (obs("2", dep(served="2")), "in-sync"),
        (obs("2", dep(complete=False)), "wait"),
        (obs("2", dep(complete=False), now=1000.0 + TIMEOUT + 1), "fail"),  # rollout stuck
        (obs("2", dep()), "check"),  # rollout complete: smoke test next
        (obs("2", dep(), smoke=SmokeResult(True, "2", "ok")), "served"),
        (obs("2", dep(), smoke=SmokeResult(False, "2", "answer is not <think>")), "fail"),
        (obs("2", dep(), smoke=SmokeResult(True, "1", "ok")), "wait"),  # old pods still answer
        (obs("2", dep(), smoke=SmokeResult(True, "1", "ok"), now=1000.0 + TIMEOUT + 1), "fail"),
        (obs("2", dep(paused=True)), "roll"),  # paused by hand, not failed: resume
        (obs("3", dep(template="3", paused=True), failed="smoke test failed"), "blocked"),  # never again
        (obs("3", dep(template="1"), failed="smoke test failed"), "blocked"),  # not rolled out
        (obs("3", dep(template="3"), failed="tagged by hand"), "fail"),  # tagged while rolled out: stop it
        (obs(None, dep()), "blocked"),  # alias unset
    ],
)
def test_decide(observation: Observation, action: str) -> None:
    plan = decide(observation, TIMEOUT)
    assert plan.action == action, plan
    if observation.alias_version is not None:
        assert plan.version == observation.alias_version and plan.reason


def test_failed_smoke_reason_is_kept() -> None:
    plan = decide(obs("2", dep(), smoke=SmokeResult(False, "2", "answer is not <think>…: 'hello'")), TIMEOUT)
    assert plan.reason == "smoke test failed: answer is not <think>…: 'hello'"


def _deployment(**status: int) -> dict[str, object]:
    return {
        "metadata": {"generation": 4, "resourceVersion": "99", "annotations": {SERVED_ANNOTATION: "1",
                                                                              ROLLOUT_ANNOTATION: "12.5"}},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": {VERSION_ANNOTATION: "2"}}}},
        "status": status,
    }  # fmt: skip


def test_deployment_state_reads_rollout_status() -> None:
    done = deployment_state(_deployment(observedGeneration=4, replicas=2, updatedReplicas=2, availableReplicas=2))
    assert (done.template_version, done.served_version, done.rollout_started) == ("2", "1", 12.5)
    assert done.rollout_complete and not done.paused and done.resource_version == "99"
    # the controller has not seen the new template yet / old pods still running / not available yet
    for status in (
        {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
        {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3},
        {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
    ):
        assert not deployment_state(_deployment(**status)).rollout_complete


def test_deployment_patch_is_a_guarded_json_patch() -> None:
    state = DeploymentState(None, None, True, False, None, resource_version="5", has_template_annotations=False,
                            has_annotations=False)  # fmt: skip
    ops = deployment_patch(state, template={VERSION_ANNOTATION: "3"}, meta={ROLLOUT_ANNOTATION: "1.0"}, paused=False)
    assert ops == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
        {"op": "add", "path": "/spec/template/metadata/annotations", "value": {}},
        {"op": "add", "path": "/spec/template/metadata/annotations/thinkflow.io~1model-version", "value": "3"},
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/thinkflow.io~1rollout-started", "value": "1.0"},
        {"op": "add", "path": "/spec/paused", "value": False},
    ]


def test_served_history_keeps_the_newest_within_the_tag_limit() -> None:
    history: list[dict[str, object]] = []
    for i in range(200):
        text = _append_history(history, {"at": f"2026-12-02T00:00:{i:02d}", "deployment": "ml/" + "x" * 20})
        history = served_history({SERVED_AT_TAG: text})
    assert len(text) <= 5000 and history[-1]["at"] == "2026-12-02T00:00:199"
    assert served_history({SERVED_AT_TAG: "not json"}) == [] and served_history({}) == []


def test_model_uris_and_served_names() -> None:
    assert parse_model_uri("models:/thinkflow-vlm@champion") == ("thinkflow-vlm", "champion", None)
    assert parse_model_uri("models:/thinkflow-vlm/3") == ("thinkflow-vlm", None, "3")
    for bad in ("thinkflow-vlm@champion", "models:/thinkflow-vlm", "models:/@champion", "models:/x/latest"):
        with pytest.raises(ServingError, match="expected models:/NAME@ALIAS"):
            parse_model_uri(bad)
    assert version_from_model_id(served_name("thinkflow-vlm", "12"), "thinkflow-vlm") == "12"
    assert version_from_model_id("thinkflow-vlm", "thinkflow-vlm") is None
    assert version_from_model_id("other-v3", "thinkflow-vlm") is None


def test_cli_configs_print_and_reject_bad_keys() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["serve-sync", "--set", "interval_s=5", "--print-config"])
    assert out.exit_code == 0 and "interval_s: 5.0" in out.output and "thinkflow-serving-champion" in out.output
    out = runner.invoke(app, ["serve-init", "--set", "version=3", "--print-config"])
    assert out.exit_code == 0 and "version: '3'" in out.output
    out = runner.invoke(app, ["serve-sync", "--set", "interval=5"])
    assert out.exit_code == 2 and "interval" in out.output
    out = runner.invoke(app, ["serve-init", "--set", "model=thinkflow-vlm", "--set", "cache_dir=/nonexistent/x"])
    assert out.exit_code == 1 and "expected models:/NAME@ALIAS" in out.output


def test_promote_wait_serving_reports_a_failed_rollout_and_a_timeout(mlflow_db: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    client.create_registered_model("w-vlm")
    for _ in range(2):
        client.create_model_version("w-vlm", source=str(tmp_path))
    client.set_registered_model_alias("w-vlm", "champion", "1")
    client.set_model_version_tag("w-vlm", "2", FAILED_TAG, "ml/dep: smoke test failed: answer is not <think>")
    runner = CliRunner()
    out = runner.invoke(app, ["promote", "w-vlm", "2", "--reason", "try", "--wait-serving", "--timeout", "5"])
    assert out.exit_code == 1, out.output
    assert "w-vlm version 2 is @champion" in out.output and "not served" in out.output
    assert "smoke test failed" in " ".join(out.output.split())
    # moving back is the rollback; nothing records it as served here (no serve-sync runs): a clear timeout
    client.set_model_version_tag("w-vlm", "1", SERVED_AT_TAG, '[{"at": "2026-12-02T00:00:00+00:00"}]')
    out = runner.invoke(app, ["promote", "w-vlm", "1", "--reason", "rollback", "--wait-serving", "--timeout", "0.1"])
    assert out.exit_code == 1 and "serve-sync" in " ".join(out.output.split()), out.output
