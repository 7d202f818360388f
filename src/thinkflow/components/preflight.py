"""``preflight``: `thinkflow.preflight.run` as the first task of every pipeline, so that a missing endpoint, data
source, bucket or credential fails the run in seconds with one message naming all of them."""

from typing import Optional

from kfp import dsl

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def preflight(data_preset: str = "", data_overrides: Optional[dict] = None, model: str = "") -> list:
    """Check what this run needs and what this pod is configured with: the build's teachers, source files and
    image roots (``data_preset`` + ``data_overrides``), the base ``model`` when it is an s3:// URI, the reward model
    when the chart publishes one ($THINKFLOW_REWARD_URL), and the bucket in $THINKFLOW_BUCKET. Returns the checks
    that ran; raises `thinkflow.preflight.PreflightError` naming every problem found."""
    import os

    from thinkflow import env, storage
    from thinkflow.config import stage_config
    from thinkflow.data.build import BuildConfig
    from thinkflow.preflight import PreflightConfig, run

    build = None
    if data_preset or data_overrides:  # the fixed keys are filled by the build tasks; they are not checked here
        build = stage_config(BuildConfig, data_preset or None, data_overrides, output_dir="<dataset>")
    bucket = os.environ.get(env.BUCKET, "").strip()
    cfg = PreflightConfig(
        build=build.model_dump(mode="json") if build is not None else None,
        reward=bool(os.environ.get(env.REWARD_URL)),
        sources=[model] if model and storage.is_remote(model) else [],
        buckets=[f"s3://{bucket}"] if bucket else [],
    )
    return run(cfg)
