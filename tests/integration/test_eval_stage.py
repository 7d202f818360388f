"""The evaluation stage end to end on CPU: benchmarks + a built dataset, the tiny model, a local MLflow store."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eval_fixtures as fx
from thinkflow.cli import app
from thinkflow.config import load_config
from thinkflow.evaluate import EvalConfig, run
from thinkflow.evaluate.benchmarks import load_benchmark
from thinkflow.evaluate.config import eval_set_hash
from thinkflow.evaluate.metrics import summarize
from thinkflow.evaluate.report import training_curves


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from thinkflow.data.synthetic import generate

    out = tmp_path_factory.mktemp("synth") / "data"
    generate(str(out), 30, seed=1, eval_fraction=0.2)
    return out


def test_config_forms() -> None:
    cfg = EvalConfig(data=["mathvista=/b/mv", {"name": "wemath", "path": "/b/wm", "limit": 3}], limit=5)
    assert [(b.name, b.path, b.limit) for b in cfg.benchmarks()] == [("mathvista", "/b/mv", 5), ("wemath", "/b/wm", 3)]
    assert EvalConfig(data="/d").benchmarks()[0].name == "dataset"
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        EvalConfig(data=["mathvista"])
    with pytest.raises(ValueError, match="unknown benchmark 'mmmu'"):
        EvalConfig(data=["mmmu=/x"])
    tiny = load_config(EvalConfig, "tiny-eval", ["max_new_tokens=4"])
    assert tiny.max_new_tokens == 4 and tiny.reward.scorer == "logprob" and tiny.split == "eval"
    paper = load_config(EvalConfig, "paper-eval")
    assert [b.name for b in paper.benchmarks()] == [
        "mathvista",
        "mathvision",
        "mathverse",
        "dynamath",
        "wemath",
        "logicvista",
    ]
    assert EvalConfig().max_new_tokens == 800 and EvalConfig().temperature == 0.0  # the paper's settings


def test_old_key_spellings_load_with_a_warning() -> None:
    """`rewards` -> `reward` (GRPO's spelling), `aha_keywords` -> `aha_cues` (the build's)."""
    with pytest.warns(DeprecationWarning, match="'rewards' is deprecated, use 'reward'"):
        cfg = EvalConfig.model_validate({"model": "/m", "rewards": {"scorer": "logprob"}})
    assert cfg.reward.scorer_model == "/m"  # the scorer still defaults to the evaluated model
    with pytest.warns(DeprecationWarning, match="'aha_keywords' is deprecated, use 'aha_cues'"):
        assert EvalConfig.model_validate({"aha_keywords": ["wait"]}).aha_cues == ["wait"]


def test_run_on_benchmarks(tiny_model: Path, tmp_path: Path, mlflow_local: str) -> None:
    import mlflow

    paths = {name: fx.WRITERS[name](tmp_path / name) for name in ("mathvista", "dynamath", "wemath", "logicvista")}
    with mlflow.start_run(run_name="grpo") as train:  # a training run with reward / length curves
        for step in range(4):
            mlflow.log_metrics({"reward": 0.2 * step, "completions/mean_length": 30.0 - step}, step=step)
    train_run = train.info.run_id
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "lineage.json").write_text(json.dumps({"stage": "grpo", "mlflow_run_id": train_run}))
    cfg = EvalConfig(
        model=str(model),
        data=[f"{n}={p}" for n, p in paths.items()],
        output_dir=str(tmp_path / "eval"),
        max_new_tokens=8,
        batch_size=4,
        progress=False,
    )
    result = run(cfg)
    out = tmp_path / "eval"
    for name in ("metrics.json", "predictions.jsonl", "report.md", "report.html"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    # a panel is a chart unless all its values are 0: then the report says so in words
    scored = any(m["score"] for m in metrics["benchmarks"].values())
    assert (out / "benchmarks.png").is_file() == scored
    assert ("every benchmark scored 0" in (out / "report.md").read_text()) == (not scored)
    assert (out / "aha.png").is_file() == bool(metrics["aha"]["total"])
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 + 6 + 7 + 2 and {p["benchmark"] for p in preds} == set(paths)
    assert all(0 < p["length_tokens"] <= 8 and p["completion"] is not None for p in preds)
    # metrics.json is exactly the aggregation of predictions.jsonl
    again = summarize(
        preds,
        {"mathvista": "accuracy", "dynamath": "worst_case", "wemath": "wemath_strict", "logicvista": "accuracy"},
        cfg.aha_cues,
    )
    assert metrics["benchmarks"] == json.loads(json.dumps(again["benchmarks"]))
    assert (
        metrics["benchmarks"]["dynamath"]["n_groups"] == 2
        and metrics["benchmarks"]["wemath"]["wemath"]["n_problems"] == 2
    )
    assert len(metrics["eval_set_hash"]) == 64 and metrics["backend"] == "hf"
    assert result.output == str(out) and result.metrics["overall.n"] == 18
    assert set(result.metrics) >= {"overall.mean_score", "mathvista.score", "dynamath.score", "wemath.score"}
    run_data = mlflow.get_run(result.mlflow_run_id).data
    assert (
        run_data.tags["thinkflow.stage"] == "evaluate"
        and run_data.tags["thinkflow.eval_set_hash"] == metrics["eval_set_hash"]
    )
    assert run_data.metrics["wemath.wemath.n_problems"] == 2.0
    logged = {f.path for f in mlflow.artifacts.list_artifacts(run_id=result.mlflow_run_id, artifact_path="eval")}
    assert {"eval/metrics.json", "eval/report.html", "eval/report.md"} <= logged
    # the training run named in the model's lineage.json gives the reward / length curves
    assert (out / "training_reward.png").is_file() and (out / "training_length.png").is_file()
    assert "- **training run**: runs:/" + train_run in (out / "report.md").read_text()
    # a handful of example predictions, each with its image's thumbnail
    md = (out / "report.md").read_text()
    assert md.count("**Verdict**: ") == cfg.examples and len(list((out / "examples").iterdir())) == cfg.examples
    # same questions and settings -> same eval set hash; another protocol -> another hash
    samples = [s for spec in cfg.benchmarks() for s in load_benchmark(spec.name, spec.path)]
    assert eval_set_hash(samples, cfg) == metrics["eval_set_hash"]
    assert eval_set_hash(samples, cfg.model_copy(update={"max_new_tokens": 9})) != metrics["eval_set_hash"]
    assert eval_set_hash(samples[1:], cfg) != metrics["eval_set_hash"]


def test_training_curves_from_an_mlflow_run(mlflow_local: str) -> None:
    import mlflow

    with mlflow.start_run() as run:
        for step in range(3):
            metrics = {"reward": 0.1 * step, "reward_std": 0.5, "completions/mean_length": 40.0 + step, "loss": 1.0}
            mlflow.log_metrics(metrics, step=step)
    curves = training_curves(run.info.run_id)
    assert set(curves) == {"reward", "completions/mean_length"}
    assert curves["reward"] == [(0, 0.0), (1, 0.1), (2, 0.2)]


def test_cli_evaluate_built_dataset_with_open_records(
    tiny_model: Path, synthetic_data: Path, tmp_path: Path, mlflow_local: str
) -> None:
    (tmp_path / "eval.yaml").write_text(
        f"model: {tiny_model}\ndata: {synthetic_data}\noutput_dir: {tmp_path / 'out'}\nmax_new_tokens: 6\n"
        f"reward:\n  scorer: logprob\n  scorer_model: {tiny_model}\nprogress: false\n"
    )
    baseline = tmp_path / "base"
    baseline.mkdir()
    result = CliRunner().invoke(app, ["evaluate", "--config", str(tmp_path / "eval.yaml")])
    assert result.exit_code == 0, result.output
    assert "evaluate done" in result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    from thinkflow.data import load_split

    assert set(metrics["benchmarks"]) == {"dataset"}
    assert metrics["benchmarks"]["dataset"]["n"] == len(load_split(str(synthetic_data), "eval"))
    assert "open" in metrics["per_verifier"]
    # the first evaluation is the baseline of the next one
    (baseline / "metrics.json").write_text((tmp_path / "out" / "metrics.json").read_text())
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--config",
            str(tmp_path / "eval.yaml"),
            "--set",
            f"baseline={baseline}",
            "--set",
            f"output_dir={tmp_path / 'out2'}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "| dataset |" in (tmp_path / "out2" / "report.md").read_text()
    assert "- **baseline**:" in (tmp_path / "out2" / "report.md").read_text()


def test_open_records_without_a_reward_model_fail_early(tiny_model: Path, synthetic_data: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--set",
            f"model={tiny_model}",
            "--set",
            f"data={synthetic_data}",
            "--set",
            f"output_dir={tmp_path / 'o'}",
        ],
    )
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "'open' records but no reward model is configured" in output and "reward.scorer" in output
    assert not (tmp_path / "o").exists()


def test_cli_config_errors_name_the_key() -> None:
    result = CliRunner().invoke(app, ["evaluate", "--set", "max_new_token=3"])
    assert result.exit_code == 2 and "max_new_token" in result.output


def test_run_with_a_judge_and_reference_rows(
    tiny_model: Path, tmp_path: Path, mlflow_local: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import thinkflow.evaluate.generate as generate
    from thinkflow.testing.scripted import ScriptedTeacher

    def answers(model: str, images: list, questions: list, **kwargs: object) -> tuple[list[str], list[int], str]:
        assert kwargs["max_pixels"] == 256 * 32 * 32  # the paper's evaluation resolution reaches generation
        return ["<think>t</think><answer>I pick the first one</answer>"] * len(questions), [5] * len(questions), "hf"

    # the random tiny model writes only newlines: fixed answers that the rules cannot read
    monkeypatch.setattr(generate, "generate_answers", answers)

    paths = {name: fx.WRITERS[name](tmp_path / name) for name in ("mathvista", "logicvista")}
    ref = tmp_path / "ref.yaml"
    ref.write_text("source: test rows\nrows:\n  some-model: {mathvista: 50.0, logicvista: 40.0, average: 45.0}\n")
    with ScriptedTeacher(lambda ask: "A") as judge:  # an OpenAI-compatible judge on loopback
        cfg = EvalConfig(
            model=str(tiny_model),
            data=[f"{n}={p}" for n, p in paths.items()],
            output_dir=str(tmp_path / "eval"),
            max_new_tokens=4,
            batch_size=4,
            progress=False,
            judge={"base_url": judge.url, "model": "judge-mini", "benchmarks": ["mathvista"]},
            reference=str(ref),
        )
        run(cfg)
        asked = sum(judge.served.values())
    out = tmp_path / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert metrics["benchmarks"]["mathvista"]["scoring"] == "judge (judge-mini)"
    assert metrics["benchmarks"]["logicvista"]["scoring"] == "rules"
    judged = [p for p in preds if p["scored_by"] == "judge"]
    assert {p["benchmark"] for p in judged} == {"mathvista"} and asked == len(judged) == 3
    assert all(p["answer"] == "A" for p in judged)  # the judge's extraction, scored by the rules
    assert metrics["overall"]["judge_failures"] == 0.0
    md = (out / "report.md").read_text()
    assert "judge (judge-mini)" in md and "## Reference (test rows)" in md and "| **this run** |" in md
    assert metrics["config"]["max_pixels"] == 256 * 32 * 32


def test_a_late_failure_keeps_the_answers_and_a_rerun_reuses_them(
    tiny_model: Path, synthetic_data: Path, tmp_path: Path, mlflow_local: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import thinkflow.evaluate.generate as gen
    import thinkflow.evaluate.score as score
    from thinkflow.evaluate.stage import PARTIAL_FILE

    cfg = EvalConfig(
        model=str(tiny_model),
        data=str(synthetic_data),
        output_dir=str(tmp_path / "out"),
        max_new_tokens=4,
        batch_size=2,
        reward={"scorer": "logprob"},  # scorer_model defaults to the evaluated model
        progress=False,
    )

    def scoring_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("scorer crashed after generation")

    monkeypatch.setattr(score, "score_predictions", scoring_fails)
    with pytest.raises(RuntimeError, match="scorer crashed"):
        run(cfg)
    partial = tmp_path / "out" / PARTIAL_FILE
    kept = [json.loads(line) for line in partial.read_text().splitlines()]
    n = len(load_benchmark("dataset", str(synthetic_data), split="eval"))
    assert len(kept) == n and all(isinstance(row["completion"], str) for row in kept)

    monkeypatch.undo()
    real_generate = gen.generate_answers

    def must_not_generate(model: str, images: list[object], questions: list[object], **kwargs: object) -> object:
        assert not questions, "answers kept by the failed attempt were generated again"
        return real_generate(model, images, questions, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gen, "generate_answers", must_not_generate)
    result = run(cfg)
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [p["completion"] for p in predictions] == [row["completion"] for row in kept]
    assert result.metrics["overall.n"] == n and not partial.exists()
