"""``plan_shards``: the ``build_shards`` pipeline parameter -> the ``["0/N", …]`` items of the build's ParallelFor."""

from kfp import dsl

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def plan_shards(build_shards: str) -> list:
    """One ``I/N`` shard spec per ParallelFor iteration (``build_shards`` is a string like every run parameter)."""
    from thinkflow.data.build import shard_specs

    return shard_specs(build_shards)
