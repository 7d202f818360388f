"""``evaluate``: `thinkflow.evaluate.run` -> the results directory, KFP ``Metrics``, ``Markdown`` and ``HTML``."""

from typing import Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from thinkflow.components.images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def evaluate(
    results: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    report_html: Output[HTML],
    preset: str = "tiny-eval",
    overrides: Optional[dict] = None,
    data: Optional[Input[Dataset]] = None,
    model: Optional[Input[Model]] = None,
    model_uri: str = "",
    label: str = "",
    part: str = "",
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
):
    """Generate and score with the ``model`` artifact (else ``model_uri``) on the eval split of ``data``
    (added to the preset's benchmarks when it lists some). ``results`` holds metrics.json, report.md/html,
    predictions.jsonl. With ``part``, only that benchmark (one task of a fanned-out evaluation; ``merge_eval``
    joins the parts)."""
    from thinkflow import storage
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.evaluate import EvalConfig, run
    from thinkflow.evaluate.tasks import report_tags, with_eval_dataset

    cfg = stage_config(
        EvalConfig,
        preset,
        overrides,
        model=model.path if model is not None else (model_uri or None),
        output_dir=results.path,
    )
    if part:
        cfg = cfg.model_copy(update={"part": part})
    cfg = with_eval_dataset(cfg, data.path if data is not None else None)
    result = runtime.run_stage(run, cfg, workspace)
    runtime.copy_output(result.output, results.path)
    runtime.copy_output(storage.join(results.path, "report.md"), report.path)
    runtime.copy_output(storage.join(results.path, "report.html"), report_html.path)
    runtime.record(result, metrics, results, label=label, tags=report_tags(result, results, label))
