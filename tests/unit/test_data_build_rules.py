"""Build rules of issue 11 §5: prompts from files/URIs with a checked sha256 (downloaded from a loopback HTTP
server, never the internet), the paper and open presets, verify.mode, GeoQA170K RL-only, and the length-gap
filter over the whole distilled answer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import warnings
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from thinkflow.config import load_config
from thinkflow.data.build import BuildConfig, run
from thinkflow.data.distill import Distiller, Item
from thinkflow.data.prompts import PromptError, Prompts, PromptsConfig, PromptSource, fetch_prompt
from thinkflow.data.teachers import Reply
from thinkflow.data.text import format_response, word_count
from thinkflow.data.workdir import BuildState
from thinkflow.records import read_jsonl

VLAA_COMMIT = "a2c96787383d437941f65b4a3c9c8602f4470d26"
BRACES_REWRITE = "Point every caption reference at the image, change nothing else.\n\n{input}\n"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server on loopback serving tmp_path/www, and that directory."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("THINKFLOW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_downloaded_prompt_is_checked_and_cached(web: tuple[str, Path], cache: Path) -> None:
    url, root = web
    (root / "rewrite.txt").write_text(BRACES_REWRITE, encoding="utf-8")
    sha = hashlib.sha256(BRACES_REWRITE.encode()).hexdigest()
    source = PromptSource(uri=f"{url}/rewrite.txt", sha256=sha, placeholders="braces", fields={"input": "response"})
    assert fetch_prompt(source) == BRACES_REWRITE
    assert (cache / "prompts" / f"{sha}.txt").read_text(encoding="utf-8") == BRACES_REWRITE
    (root / "rewrite.txt").unlink()  # the cached copy serves from now on
    prompts = Prompts(PromptsConfig(rewrite=source))
    assert prompts.uses("rewrite", "response") and not prompts.uses("rewrite", "reasoning")
    assert prompts.render("rewrite", reasoning="r", response="<think>x</think><answer>1</answer>").endswith(
        "<think>x</think><answer>1</answer>"
    )


def test_sha256_mismatch_is_a_clear_error(web: tuple[str, Path], cache: Path) -> None:
    url, root = web
    (root / "verify.txt").write_text("changed upstream {gold} {pred}", encoding="utf-8")
    wrong = "0" * 64
    with pytest.raises(PromptError, match=r"prompts\.verify: .*verify\.txt: sha256 mismatch: expected 0{64}"):
        Prompts(PromptsConfig(verify=PromptSource(uri=f"{url}/verify.txt", sha256=wrong, placeholders="braces")))
    assert not (cache / "prompts").exists() or not list((cache / "prompts").iterdir())  # nothing cached


def test_prompt_sources_are_validated() -> None:
    with pytest.raises(ValueError, match="needs sha256"):
        PromptSource(uri="https://raw.githubusercontent.com/o/r/abc/p.txt")
    with pytest.raises(ValueError, match="use https://"):
        PromptSource(uri="http://example.com/p.txt", sha256="0" * 64)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        PromptSource(uri="p.txt", sha256="abc")


def test_file_uri_braces_and_unknown_placeholders(tmp_path: Path) -> None:
    path = tmp_path / "verify.txt"
    path.write_text("gt {gold}\npred {pred}\n", encoding="utf-8")
    source = PromptSource(uri=f"file://{path}", placeholders="braces", fields={"gold": "solution", "pred": "answer"})
    prompts = Prompts(PromptsConfig(verify=source))
    assert prompts.render("verify", question="q", solution="4", answer="5") == "gt 4\npred 5"
    with pytest.raises(PromptError, match=r"unknown placeholder\(s\) gold, pred .*fields"):
        Prompts(PromptsConfig(verify=PromptSource(uri=str(path), placeholders="braces")))
    with pytest.raises(PromptError, match="no such file"):
        Prompts(PromptsConfig(caption=str(tmp_path / "missing.txt")))


def test_paper_preset_pins_vlaa_thinking_prompts_and_names_the_papers_teachers() -> None:
    cfg = load_config(BuildConfig, "vlaa-distill-paper")
    t = cfg.teachers
    assert (t.caption.model, t.reason.model, t.rewrite.model, t.judge.model) == (  # type: ignore[union-attr]
        "gpt-4o",
        "deepseek-ai/DeepSeek-R1",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo",
    )
    assert cfg.verify.mode == "judge" and cfg.rewrite.max_word_delta == 15
    files = {
        "caption": "1.captioning.txt",
        "reason": "2.r1cot.txt",
        "rewrite": "3.rewrite.txt",
        "verify": "4.verify.txt",
    }
    for name, file in files.items():
        source = getattr(cfg.prompts, name)
        assert isinstance(source, PromptSource)
        assert source.uri == (
            f"https://raw.githubusercontent.com/UCSC-VLAA/VLAA-Thinking/{VLAA_COMMIT}/assets/prompts/{file}"
        )
        assert source.sha256 is not None
    assert cfg.prompts.rewrite.fields == {"input": "response"}  # type: ignore[union-attr]
    geoqa = [s for s in cfg.sources if s.name == "geoqa170k"]
    assert geoqa and geoqa[0].split == "rl" and geoqa[0].distill is False


def test_open_preset_and_the_deprecated_name() -> None:
    cfg = load_config(BuildConfig, "vlaa-distill-open")
    assert cfg.verify.mode == "rules" and cfg.prompts.caption is None  # ThinkFlow's own prompts and verifiers
    with pytest.warns(DeprecationWarning, match="vlaa-distill-open"):
        old = load_config(BuildConfig, "vlaa-distill")
    assert old == cfg


def test_geoqa_goes_to_rl_without_distillation(tmp_path: Path) -> None:
    """With teachers configured (at a dead address), GeoQA records skip steps 2-5 and land in rl only."""
    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i in range(6):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(images / f"{i}.png")
        rows.append({"id": str(i), "image": f"{i}.png", "question": "Which? A. 1 B. 2", "solution": "A"})
    src = tmp_path / "geoqa.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    dead = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    cfg = load_config(BuildConfig, "vlaa-distill-open").model_copy(
        update={
            "output_dir": str(tmp_path / "out"),
            "tracking": False,
            "progress": False,
            "eval_fraction": 0.0,
        }
    )
    cfg = BuildConfig.model_validate(
        {
            **cfg.model_dump(mode="json"),
            "sources": [
                {
                    "kind": "jsonl",
                    "name": "geoqa170k",
                    "path": str(src),
                    "images": str(images),
                    "verifier_type": "mcq",
                    "split": "rl",
                    "distill": False,
                }
            ],
            "teachers": {"caption": dead, "reason": dead, "rewrite": dead, "judge": dead},
        }
    )
    run(cfg)
    out = tmp_path / "out"
    assert [r["id"] for r in read_jsonl(out / "rl.jsonl")] == [f"geoqa170k-{i}" for i in range(6)]
    assert not (out / "sft.jsonl").exists()
    assert all("response" not in r for r in read_jsonl(out / "rl.jsonl"))


class FakeTeacher:
    """Answers every chat with ``text`` and records the prompts (the Teacher surface the steps use)."""

    def __init__(self, text: str, model: str = "teacher") -> None:
        self.text = text
        self.prompts: list[str] = []
        self.cfg = type("Cfg", (), {"model": model})()

    async def chat(self, messages: list[dict[str, Any]]) -> Reply:
        self.prompts.append(str(messages[-1]["content"]))
        return Reply(self.text, None, 10, 10, self.cfg.model, 1, "stop")


def _builder(tmp_path: Path, **kw: Any) -> Distiller:
    cfg = BuildConfig(output_dir=str(tmp_path / "o"), tracking=False, progress=False, **kw)
    return Distiller(BuildState(cfg, tmp_path / "o", tmp_path / "w"))


def _item(response: str, vtype: str = "digit", solution: str = "3") -> Item:
    item = Item("r1", {"id": "r1", "question": "How many?", "solution": solution, "verifier_type": vtype}, None, None)
    item.outputs["reason"] = {"status": "ok", "out": {"response": response}}
    return item


def test_length_gap_compares_the_whole_answer_before_and_after(tmp_path: Path) -> None:
    before = format_response("The caption says there are three cubes. So three.", "3")
    builder = _builder(tmp_path)
    ok = FakeTeacher("The image shows there are three cubes. So three.")
    entry = asyncio.run(builder.rewrite(ok, _item(before)))  # type: ignore[arg-type]
    assert entry["status"] == "ok"
    assert entry["out"]["response"] == format_response("The image shows there are three cubes. So three.", "3")
    padded = "The image shows there are three cubes. So three." + " very" * 16
    entry = asyncio.run(builder.rewrite(FakeTeacher(padded), _item(before)))  # type: ignore[arg-type]
    assert entry["status"] == "rejected" and "answer changed by 16 (> 15)" in entry["reason"]
    # the paper's rewrite prompt gets the whole answer ({input} -> $response) and returns it
    prompt = tmp_path / "rewrite.txt"
    prompt.write_text(BRACES_REWRITE, encoding="utf-8")
    source = PromptSource(uri=str(prompt), placeholders="braces", fields={"input": "response"})
    builder = _builder(tmp_path / "b", prompts=PromptsConfig(rewrite=source))
    after = "<think>The image shows there are three cubes. So three.</think> 3"
    teacher = FakeTeacher(after)
    entry = asyncio.run(builder.rewrite(teacher, _item(before)))  # type: ignore[arg-type]
    assert before in teacher.prompts[0]  # the whole distilled answer went to the rewriter
    assert entry["status"] == "ok" and word_count(entry["out"]["response"]) - word_count(before) == 0


def test_verify_mode_judge_asks_the_judge_for_every_sample(tmp_path: Path) -> None:
    response = format_response("Count: three.", "3")
    rules = _builder(tmp_path / "r")
    entry = asyncio.run(rules.verify(None, _item(response)))
    assert entry["out"]["method"] == "rule"
    judge = _builder(tmp_path / "j", verify={"mode": "judge"})
    no = FakeTeacher("No")
    entry = asyncio.run(judge.verify(no, _item(response)))  # type: ignore[arg-type]
    assert entry["status"] == "rejected" and "judge" in entry["reason"] and len(no.prompts) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entry = asyncio.run(judge.verify(FakeTeacher("Yes"), _item(response)))  # type: ignore[arg-type]
    assert entry["out"]["method"] == "judge"
