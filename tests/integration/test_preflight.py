"""``thinkflow preflight``: against real loopback servers (the scripted OpenAI-compatible teacher, the reward
model's own app via `ScorerServer`, moto S3), it passes when everything is there and otherwise fails once,
naming every missing thing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from thinkflow import storage
from thinkflow.cli import app
from thinkflow.data.teachers import TeacherConfig
from thinkflow.preflight import PreflightConfig, PreflightError, run
from thinkflow.rewards.serve import ScorerServer
from thinkflow.testing import free_port
from thinkflow.testing.scripted import ScriptedTeacher

TOKEN = "reward-token"


class Constant:
    def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]:
        return [1.0] * len(answers)


@pytest.fixture
def teacher() -> Iterator[ScriptedTeacher]:
    with ScriptedTeacher() as t:
        yield t


@pytest.fixture
def reward() -> Iterator[ScorerServer]:
    with ScorerServer(Constant(), api_key=TOKEN) as server:
        yield server


@pytest.fixture
def data(s3: str, tmp_path: Path) -> str:
    src = tmp_path / "train.jsonl"
    src.write_text('{"question": "q"}\n')
    storage.upload(src, "s3://raw/train.jsonl")
    return "s3://raw/train.jsonl"


def test_passes_when_everything_answers_and_exists(
    teacher: ScriptedTeacher, reward: ScorerServer, data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THINKFLOW_REASONER_BASE_URL", teacher.url)  # as the chart's thinkflow-env publishes it
    monkeypatch.setenv("THINKFLOW_REWARD_URL", reward.url)
    monkeypatch.setenv("THINKFLOW_REWARD_API_KEY", TOKEN)
    config = tmp_path / "preflight.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "teachers": {"reason": {"base_url_env": "THINKFLOW_REASONER_BASE_URL", "model": "r1"}},
                "reward": True,
                "sources": [data, str(tmp_path / "preflight.yaml")],
                "buckets": ["s3://raw/datasets/out"],
            }
        )
    )
    result = CliRunner().invoke(app, ["preflight", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "preflight ok: 5 checks" in result.output


def test_one_message_names_every_missing_endpoint_source_bucket_and_bad_token(
    teacher: ScriptedTeacher, reward: ScorerServer, data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THINKFLOW_CAPTIONER_BASE_URL", raising=False)
    monkeypatch.setenv("THINKFLOW_REWARD_URL", reward.url)
    monkeypatch.setenv("THINKFLOW_REWARD_API_KEY", "wrong")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    cfg = PreflightConfig(
        teachers={
            "reason": TeacherConfig(base_url=teacher.url, model="r1"),
            "rewrite": TeacherConfig(base_url=dead, model="qwen"),
            "caption": TeacherConfig(base_url_env="THINKFLOW_CAPTIONER_BASE_URL", model="qwen-vl"),
        },
        reward=True,
        sources=[data, "s3://raw/missing.jsonl", "s3://nobucket/x.jsonl", str(tmp_path / "absent.jsonl")],
        buckets=["s3://raw/out", "s3://no-such-bucket/out"],
    )
    with pytest.raises(PreflightError) as caught:
        run(cfg)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("preflight: 7 of 10 checks failed: ")
    for expected in (
        f"teacher rewrite: {dead} does not answer",
        "teacher caption: teacher model qwen-vl: base_url is unset and the THINKFLOW_CAPTIONER_BASE_URL",
        "refused the token in $THINKFLOW_REWARD_API_KEY (HTTP 401)",
        f"source s3://raw/missing.jsonl, source {tmp_path / 'absent.jsonl'}: not found",  # one reason, said once
        "bucket 'nobucket' does not exist",
        "bucket 'no-such-bucket' does not exist",
    ):
        assert expected in message, (expected, message)
    assert "teacher reason" not in message and "s3://raw/out" not in message and data + ":" not in message


def test_a_teacher_serving_another_model_and_a_missing_reward_url_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp import web

    class Lists(ScriptedTeacher):
        def _app(self) -> Any:  # a vLLM that lists its served model name
            async def models(request: Any) -> Any:
                return web.json_response({"object": "list", "data": [{"id": "Qwen2.5-VL-72B-Instruct"}]})

            application = web.Application()
            application.router.add_get("/v1/models", models)
            return application

    monkeypatch.delenv("THINKFLOW_REWARD_URL", raising=False)
    with Lists() as served:
        cfg = PreflightConfig(
            teachers={"caption": TeacherConfig(base_url=served.url, model="Qwen/Qwen2.5-VL-72B-Instruct")},
            reward=True,
        )
        with pytest.raises(PreflightError) as caught:
            run(cfg)
    message = str(caught.value)
    assert "serves ['Qwen2.5-VL-72B-Instruct'], not model 'Qwen/Qwen2.5-VL-72B-Instruct'" in message
    assert "no reward_url and $THINKFLOW_REWARD_URL is unset" in message


def test_a_build_preset_brings_its_teachers_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """`build: vlaa-distill-open` outside the cluster: its in-cluster teachers' env keys are unset and there is
    no S3 endpoint; one message names each (the judge shares the rewriter's endpoint: one reason, both named)."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "THINKFLOW_CAPTIONER_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("THINKFLOW_REASONER_BASE_URL", raising=False)
    monkeypatch.delenv("THINKFLOW_REWRITER_BASE_URL", raising=False)
    with pytest.raises(PreflightError) as caught:
        run(PreflightConfig(build="vlaa-distill-open"))
    message = str(caught.value)
    for name, key in (("caption", "CAPTIONER"), ("reason", "REASONER")):
        assert f"teacher {name}: teacher model" in message and f"THINKFLOW_{key}_BASE_URL" in message
    assert (
        "teacher rewrite, teacher judge: teacher model Qwen/Qwen2.5-72B-Instruct: base_url is unset and the "
        "THINKFLOW_REWRITER_BASE_URL" in message
    )  # the same endpoint, said once
    assert "source s3://thinkflow/raw/clevr_math.jsonl, source s3://thinkflow/raw/clevr_math/, " in message
    assert "source s3://thinkflow/raw/docvqa/: no S3 endpoint configured" in message
    assert message.count("no S3 endpoint configured") == 1
