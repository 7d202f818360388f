"""``build_dataset``: `thinkflow.data.build.run` -> a ``Dataset`` artifact (the dataset directory)."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_dataset(
    dataset: Output[Dataset],
    metrics: Output[Metrics],
    preset: str = "tiny-data",
    overrides: Optional[dict] = None,
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
):
    """Build the VLAA-format dataset (sources, teachers, the six steps, split) described by the preset.
    The step journals live in the run's workspace, so a retried task does not repeat teacher calls."""
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.data.build import BuildConfig, run

    cfg = stage_config(
        BuildConfig, preset, overrides, output_dir=dataset.path, work_dir=str(runtime.workspace_dir(workspace, "build"))
    )
    result = runtime.run_stage(run, cfg, workspace)
    runtime.record(result, metrics, dataset)
