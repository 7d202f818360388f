"""``compare_study``: `thinkflow.evaluate.compare.compare` over the study's evaluations -> the comparison table."""

from typing import List, Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Output

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def compare_study(
    evaluations: Input[List[Artifact]],
    table: Output[Markdown],
    metrics: Output[Metrics],
    summary: Output[Artifact],
    baseline: str = "",
    columns: Optional[list] = None,
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
):
    """One row per evaluation (labelled by the recipe the evaluate task recorded), paper-style columns."""
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.evaluate.compare import CompareConfig, compare

    rows = [{"label": e.metadata.get("label") or f"run{i}", "results": e.path} for i, e in enumerate(evaluations)]
    cfg = stage_config(
        CompareConfig, None, None, evaluations=rows, output_dir=summary.path, baseline=baseline or None, columns=columns
    )
    result = runtime.run_stage(compare, cfg, workspace)
    runtime.copy_output(result.artifacts["table"], table.path)
    runtime.record(result, metrics, summary)
