"""``merge_eval``: `thinkflow.evaluate.merge.run` over the collected ``evaluate`` parts -> the results directory,
KFP ``Metrics``, ``Markdown`` and ``HTML`` (what one ``evaluate`` task of the whole evaluation outputs)."""

from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Output

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def merge_eval(
    parts: Input[List[Artifact]],
    results: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    report_html: Output[HTML],
    label: str = "",
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
):
    """Join the per-benchmark evaluation parts: ``results`` holds metrics.json, report.md/html, predictions.jsonl."""
    from thinkflow import storage
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.evaluate.merge import MergeEvalConfig, run
    from thinkflow.evaluate.tasks import report_tags

    cfg = stage_config(MergeEvalConfig, None, None, parts=[p.path for p in parts], output_dir=results.path)
    result = runtime.run_stage(run, cfg, workspace)
    runtime.copy_output(result.output, results.path)
    runtime.copy_output(storage.join(results.path, "report.md"), report.path)
    runtime.copy_output(storage.join(results.path, "report.html"), report_html.path)
    runtime.record(result, metrics, results, label=label, tags=report_tags(result, results, label))
