"""``merge_dataset``: `thinkflow.data.merge.run` over the collected shards -> a ``Dataset`` artifact."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def merge_dataset(
    shards: Input[List[Artifact]],
    dataset: Output[Dataset],
    metrics: Output[Metrics],
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
):
    """Merge the shards of a build (dedupe across shards, split, one manifest): the unsharded build's bytes."""
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.data.merge import MergeConfig, run

    cfg = stage_config(MergeConfig, None, None, shards=[s.path for s in shards], output_dir=dataset.path)
    result = runtime.run_stage(run, cfg, workspace)
    runtime.record(result, metrics, dataset)
