"""``thinkflow serve-reward``: the real server (the CLI in a subprocess, uvicorn in-process for the edge cases)
scoring batches over HTTP for GRPO's client, with a bearer token, and the IXC-2.5-Reward adapter through a
tiny remote-code model that exposes the documented ``get_scores`` API."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from thinkflow.rewards import HTTPScorer, LogProbScorer, MixedReward, RewardConfig, ScorerError
from thinkflow.rewards.serve import IXCRewardScorer, ScorerServer, ServeError, load_scorer
from thinkflow.testing import free_port, wait_http

QUESTION = "What is in the image?"
ANSWERS = ["a red square", "a blue circle", "nothing"]
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (56, 56), "red").save(path)
    return path


@pytest.mark.slow
def test_cli_server_scores_a_grpo_batch_with_a_token(tiny_model: Path, image_file: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "RM_TOKEN": TOKEN, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "thinkflow.cli", "serve-reward", "--model", str(tiny_model), "--kind", "logprob",
           "--port", str(port), "--api-key-env", "RM_TOKEN"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/score"
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}
        # no token / a wrong token: 401, not retried
        assert httpx.post(url, json={"question": QUESTION, "answers": ["a"]}).status_code == 401
        with pytest.raises(ScorerError, match="401"):
            HTTPScorer(url, api_key="wrong", retries=0).score(None, QUESTION, ["a"])
        # GRPO's client: the mixed reward with scorer=http, URL and token from the environment the chart sets
        os.environ["THINKFLOW_REWARD_URL"] = url
        os.environ["THINKFLOW_REWARD_API_KEY"] = TOKEN
        try:
            reward = MixedReward(RewardConfig(scorer="http", image_root=str(image_file.parent)))
            reward.check(["open", "digit"])
            completions = [f"<think>look</think><answer>{a}</answer>" for a in ANSWERS] + ["<answer>3</answer>"]
            logged: dict[str, float] = {}
            rewards = reward(
                prompts=[QUESTION] * 4,
                completions=completions,
                solution=[ANSWERS[0]] * 3 + [3],
                verifier_type=["open"] * 3 + ["digit"],
                question=[QUESTION] * 4,
                image=[image_file.name] * 4,
                log_metric=lambda k, v: logged.__setitem__(k, v),
            )
        finally:
            os.environ.pop("THINKFLOW_REWARD_URL")
            os.environ.pop("THINKFLOW_REWARD_API_KEY")
        direct = LogProbScorer.from_pretrained(tiny_model, device="cpu").score(
            Image.open(image_file), QUESTION, ANSWERS
        )
        ref = direct[0]
        expected = [1 - math.exp(-(s - ref)) if s > ref else 0.0 for s in direct]
        assert rewards == pytest.approx([*expected, 1.0], abs=1e-4)
        assert set(logged) >= {"open_reward/mean", "open_reward/std", "open_reward/min", "open_reward/max"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Echo:
    """A scorer whose score is the answer's length; ``gate`` holds a request to fill the queue."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def score(self, image: Any, question: str, answers: Sequence[str]) -> list[float]:
        self.entered.set()
        self.gate.wait(timeout=30)
        return [float(len(a)) for a in answers]


def test_bad_input_auth_size_and_queue_limits(image_file: Path) -> None:
    scorer = Echo()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with ScorerServer(scorer, api_key=TOKEN, max_queue=1, max_body_bytes=4096, max_answers=4) as server:
        url = server.url
        ok = httpx.post(url, json={"question": "q", "answers": ["ab", "abcd"]}, headers=auth)
        assert ok.status_code == 200 and ok.json() == {"scores": [2.0, 4.0]}
        bad = httpx.post(url, json={"question": 3, "answers": ["a"]}, headers=auth)
        assert bad.status_code == 400 and "'question'" in bad.json()["error"]
        bad = httpx.post(url, json={"question": "q", "answers": "a"}, headers=auth)
        assert bad.status_code == 400 and "'answers'" in bad.json()["error"]
        bad = httpx.post(url, json={"question": "q", "answers": ["a"] * 5}, headers=auth)
        assert bad.status_code == 400 and "at most 4" in bad.json()["error"]
        bad = httpx.post(url, content=b"{not json", headers=auth)
        assert bad.status_code == 400
        bad = httpx.post(
            url, json={"question": "q", "answers": ["a"], "image": "data:image/png;base64,AAAA"}, headers=auth
        )
        assert bad.status_code == 400 and "'image'" in bad.json()["error"]
        big = httpx.post(url, json={"question": "q" * 5000, "answers": ["a"]}, headers=auth)
        assert big.status_code == 413
        assert httpx.post(url, json={"question": "q", "answers": ["a"]}).status_code == 401
        # a full queue answers 503 (the client retries 5xx)
        scorer.gate.clear()
        scorer.entered.clear()
        first: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: first.update(
                r=httpx.post(url, json={"question": "q", "answers": ["a"]}, headers=auth, timeout=60)
            )
        )
        t.start()
        assert scorer.entered.wait(timeout=30)
        busy = httpx.post(url, json={"question": "q", "answers": ["a"]}, headers=auth)
        assert busy.status_code == 503 and "busy" in busy.json()["error"]
        scorer.gate.set()
        t.join(timeout=30)
        assert first["r"].status_code == 200


IXC_REMOTE_CODE = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel


class TinyIXCRewardConfig(PretrainedConfig):
    model_type = "tiny_ixc_reward"


class TinyIXCReward(PreTrainedModel):
    """Exposes IXC-2.5-Reward's scoring API: get_score(chat, image, hd_num) and get_scores(chats, images, hd_num)."""

    config_class = TinyIXCRewardConfig

    def __init__(self, config):
        super().__init__(config)
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.calls = []
        self.post_init()

    def get_score(self, chat, image, hd_num=24):
        return self.get_scores([chat], [image], hd_num=hd_num)[0]

    def get_scores(self, chats, images, hd_num=24):
        from PIL import Image

        out = []
        for chat, paths in zip(chats, images):
            assert chat[0]["role"] == "user" and chat[1]["role"] == "assistant"
            red = sum(Image.open(p).convert("RGB").getpixel((0, 0))[0] for p in paths) / 255.0
            self.calls.append((chat[0]["content"], len(paths), hd_num))
            out.append(float(self.weight) * (len(chat[1]["content"]) + red))
        return out
'''


def _tiny_ixc_dir(root: Path, tiny_model: Path) -> Path:
    """A model dir loadable with trust_remote_code: config + remote module + weights + a tokenizer."""
    import shutil

    import torch

    path = root / "tiny-ixc-reward"
    path.mkdir()
    (path / "modeling_tiny_ixc.py").write_text(IXC_REMOTE_CODE, encoding="utf-8")
    config = {
        "model_type": "tiny_ixc_reward",
        "architectures": ["TinyIXCReward"],
        "auto_map": {
            "AutoConfig": "modeling_tiny_ixc.TinyIXCRewardConfig",
            "AutoModel": "modeling_tiny_ixc.TinyIXCReward",
        },
    }
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(1)}, str(path / "model.safetensors"))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model / name).exists():
            shutil.copy(tiny_model / name, path / name)
    return path


def test_ixc_adapter_calls_the_remote_code_scoring_api(tiny_model: Path, image_file: Path, tmp_path: Path) -> None:
    path = _tiny_ixc_dir(tmp_path, tiny_model)
    scorer = load_scorer(str(path), "ixc2.5-reward", batch_size=2)
    assert isinstance(scorer, IXCRewardScorer)
    scores = scorer.score(Image.open(image_file), QUESTION, ANSWERS)
    assert scores == pytest.approx([len(a) + 1.0 for a in ANSWERS])  # red pixel: 255/255
    assert scorer.model.calls == [(QUESTION, 1, 9)] * 3  # two batches (2 + 1), one image path each, hd_num 9
    with ScorerServer(scorer, api_key=TOKEN) as server:
        client = HTTPScorer(server.url, api_key=TOKEN, image_root=image_file.parent)
        assert client.score(image_file.name, QUESTION, ANSWERS) == pytest.approx(scores)
        assert client.score(None, QUESTION, ["ab"]) == pytest.approx([2.0])


def test_load_scorer_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ServeError, match="kind must be one of"):
        load_scorer(str(tmp_path), "magic")
    with pytest.raises(ServeError, match=r"no config\.json"):
        load_scorer(str(tmp_path), "logprob")


def test_sequence_classification_scorer_on_a_tiny_qwen25vl_reward_model(tmp_path: Path, image_file: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoProcessor

    from thinkflow.models.sequence_classification import build_tiny_reward_model
    from thinkflow.rewards.serve import SequenceClassificationScorer

    path = build_tiny_reward_model(tmp_path / "rm")
    scorer = load_scorer(str(path), "sequence-classification", batch_size=2)
    assert isinstance(scorer, SequenceClassificationScorer)
    image = Image.open(image_file)
    scores = scorer.score(image, QUESTION, ANSWERS)
    assert len(scores) == 3 and len(set(scores)) == 3  # one scalar per answer, answers differ
    # each score is the head's logit for that single (image, question, answer) chat, batched or not
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    chat = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": [{"type": "text", "text": ANSWERS[2]}]},
    ]
    text = processor.apply_chat_template(chat, tokenize=False)
    with torch.inference_mode():
        alone = model(**processor(text=[text], images=[image.convert("RGB")], return_tensors="pt")).logits
    assert scores[2] == pytest.approx(float(alone[0, 0]), abs=1e-4)
    with ScorerServer(scorer, api_key=TOKEN) as server:
        assert HTTPScorer(server.url, api_key=TOKEN).score(image, QUESTION, ANSWERS) == pytest.approx(scores, abs=1e-4)
