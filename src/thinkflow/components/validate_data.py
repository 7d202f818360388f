"""``validate_data``: `thinkflow.data.validate.run` on a ``Dataset`` artifact; fails the run on bad data."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate_data(
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    preset: str = "",
    overrides: Optional[dict] = None,
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
):
    """Check schema, images and verifier types; raise (naming the records) past the allowed bad fraction."""
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.data.validate import ValidateConfig, run

    cfg = stage_config(ValidateConfig, preset, overrides, data=dataset.path)
    result = runtime.run_stage(run, cfg, workspace)
    runtime.record(result, metrics)
