"""Fanned-out evaluation: one `evaluate` task per benchmark (``part``) + `thinkflow.evaluate.merge` writes what the
whole evaluation in one task writes, on the same predictions."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eval_fixtures as fx
from thinkflow.cli import app
from thinkflow.evaluate import EvalConfig, run
from thinkflow.evaluate.merge import MergeEvalConfig
from thinkflow.evaluate.merge import run as merge
from thinkflow.testing.scripted import ScriptedTeacher

# Not functions of the predictions: the time spent generating (summed over the parts) and where it was written.
NOT_COMPARED = ("generation_seconds",)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers that depend on the model and the question only (some right, some wrong, some malformed)."""
    import thinkflow.evaluate.generate as generate

    def answers(model: str, images: list[Any], questions: list[str], **kwargs: Any) -> tuple[list[str], list[int], str]:
        texts, counts = [], []
        for q in questions:
            h = hashlib.sha256(f"{model}\0{q}".encode()).digest()
            pick = ["A", "B", "C", "2", "3"][h[0] % 5]
            texts.append(f"<think>wait, let me check</think><answer>{pick}</answer>" if h[1] % 4 else pick)
            counts.append(3 + h[2] % 20)
        return texts, counts, "hf"

    monkeypatch.setattr(generate, "generate_answers", answers)


def _load(out: Path) -> dict[str, Any]:
    doc = json.loads((out / "metrics.json").read_text())
    for key in NOT_COMPARED:
        doc.pop(key)
    doc["config"].pop("output_dir")  # each run writes to its own folder
    return doc


def test_parts_then_merge_equal_one_task(
    tiny_model: Path, tmp_path: Path, mlflow_local: str, stand_in: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from thinkflow.data.synthetic import generate

    data = [f"{name}={write(tmp_path / 'bench' / name)}" for name, write in fx.WRITERS.items()]
    synthetic = tmp_path / "synth"
    generate(str(synthetic), 30, seed=1, eval_fraction=0.3)
    data.append(f"dataset={synthetic}")  # the built dataset's eval split, as the pipeline adds it
    (tmp_path / "ref.yaml").write_text("source: rows\nrows:\n  m: {mathvista: 50.0, average: 45.0}\n")
    with ScriptedTeacher(lambda ask: "B") as judge:
        base = EvalConfig(
            model=str(tiny_model),
            data=data,
            split="eval",
            max_new_tokens=8,
            progress=False,
            reward={"scorer": "logprob"},
            judge={"base_url": judge.url, "model": "judge-mini", "benchmarks": ["mathvista", "mathverse"]},
            base_model=f"{tiny_model}/",  # another name for the same weights: the stand-in answers differ
            reference=str(tmp_path / "ref.yaml"),
        )
        whole = run(base.model_copy(update={"output_dir": str(tmp_path / "whole")}))
        names = [spec.name for spec in base.benchmarks()]
        parts = []
        for name in reversed(names):  # the order of the parts does not matter
            out = tmp_path / "parts" / name
            run(base.model_copy(update={"part": name, "output_dir": str(out)}))
            parts.append(str(out))
    one, part_doc = _load(tmp_path / "whole"), _load(Path(parts[0]))
    assert part_doc["config"]["part"] == names[-1] and list(part_doc["benchmarks"]) == [names[-1]]

    merged = merge(MergeEvalConfig(parts=parts, output_dir=str(tmp_path / "merged")))
    assert _load(tmp_path / "merged") == one
    assert merged.metrics == whole.metrics  # the headline the registration and the parent run get
    for name in ("predictions.jsonl", "base_predictions.jsonl", "report.md"):
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # the comparison is not vacuous: every benchmark, a before, judged rows, varied outcomes
    assert list(one["benchmarks"]) == names and one["base"]["model"] == f"{tiny_model}/"
    assert one["benchmarks"]["mathvista"]["scoring"] == "judge (judge-mini)"
    assert 0 < one["overall"]["accuracy"] < 1 and one["overall"]["n"] > 30
    timing = json.loads((tmp_path / "merged" / "metrics.json").read_text())["generation_seconds"]
    parts_timing = sum(json.loads((Path(p) / "metrics.json").read_text())["generation_seconds"] for p in parts)
    assert timing == pytest.approx(parts_timing)


def _part(tmp_path: Path, model: Path, name: str, bench: dict[str, str], **update: Any) -> str:
    data = [f"{n}={p}" for n, p in bench.items()]
    cfg = EvalConfig(model=str(model), data=data, max_new_tokens=4, progress=False, **update)
    out = tmp_path / f"part-{name}-{len(update)}"
    run(cfg.model_copy(update={"part": name, "output_dir": str(out)}))
    return str(out)


def test_merge_rejects_parts_that_do_not_make_one_evaluation(
    tiny_model: Path, tmp_path: Path, mlflow_local: str, stand_in: None
) -> None:
    bench = {n: str(fx.WRITERS[n](tmp_path / n)) for n in ("mathvista", "logicvista")}
    vista, logic = _part(tmp_path, tiny_model, "mathvista", bench), _part(tmp_path, tiny_model, "logicvista", bench)
    other = _part(tmp_path, tiny_model, "logicvista", bench, seed=3)
    out = str(tmp_path / "m")
    with pytest.raises(ValueError, match="no part for logicvista"):
        merge(MergeEvalConfig(parts=[vista], output_dir=out))
    with pytest.raises(ValueError, match="both evaluate 'mathvista'"):
        merge(MergeEvalConfig(parts=[vista, vista], output_dir=out))
    with pytest.raises(ValueError, match=r"another evaluation config than .*part-mathvista.* \(seed\)"):
        merge(MergeEvalConfig(parts=[vista, other], output_dir=out))
    with pytest.raises(ValueError, match="part: 'wemath' is not among the benchmarks"):
        EvalConfig(data=[f"{n}={p}" for n, p in bench.items()], part="wemath").benchmarks()
    with pytest.raises(ValueError, match=r"part .*m2: no such file"):
        merge(MergeEvalConfig(parts=[vista, str(tmp_path / "m2")], output_dir=out))
    assert not (tmp_path / "m").exists()  # nothing written by a refused merge

    result = CliRunner().invoke(app, ["evaluate-merge", vista, logic, "-o", out])
    assert result.exit_code == 0, result.output
    assert "evaluate merged" in result.output
    doc = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert list(doc["benchmarks"]) == ["mathvista", "logicvista"] and doc["config"]["part"] is None
    result = CliRunner().invoke(app, ["evaluate-merge", vista, "-o", str(tmp_path / "m3")])
    assert result.exit_code == 1 and "no part for logicvista" in " ".join(result.output.split())
