"""``plan_eval``: the evaluation preset (+ overrides, + the dataset's eval split) -> the benchmark names, one
item per task of the evaluation's ParallelFor."""

from typing import Optional

from kfp import dsl

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def plan_eval(preset: str = "tiny-eval", overrides: Optional[dict] = None) -> list:
    """The names of the benchmarks the ``evaluate`` task with this preset, overrides and a dataset evaluates."""
    from thinkflow.config import stage_config
    from thinkflow.evaluate import EvalConfig
    from thinkflow.evaluate.tasks import with_eval_dataset

    cfg = stage_config(EvalConfig, preset, overrides, model="<model>", output_dir="<out>")
    cfg = with_eval_dataset(cfg, "<dataset>")
    return list(dict.fromkeys(spec.name for spec in cfg.benchmarks()))
