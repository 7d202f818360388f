"""``build_shard``: `thinkflow.data.build.run` with ``shard: I/N`` -> one shard of the dataset build."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_shard(
    shard: Output[Artifact],
    metrics: Output[Metrics],
    spec: str,
    preset: str = "tiny-data",
    overrides: Optional[dict] = None,
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
):
    """Build shard ``spec`` (``I/N``) of the preset's dataset. The shard and its journal live in the run's
    workspace (one folder per shard), so a retried task resumes that shard alone; then it is copied out."""
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.data.build import BuildConfig, run

    index, count = (int(x) for x in spec.split("/"))
    where = runtime.workspace_dir(workspace, "build-shards", f"{index:05d}-of-{count:05d}")
    cfg = stage_config(
        BuildConfig, preset, overrides, output_dir=str(where / "out"), work_dir=str(where / "journal"), shard=spec
    )
    result = runtime.run_stage(run, cfg, workspace)
    runtime.copy_output(result.output, shard.path)
    runtime.record(result, metrics, shard)
