"""``register``: `thinkflow.registry.register` -> a model version in MLflow with ``@challenger``/``@champion``."""

from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    metrics: Output[Metrics],
    name: str = "",
    preset: str = "",
    overrides: Optional[dict] = None,
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
) -> NamedTuple("Outputs", name=str, version=str, alias=str):  # type: ignore[valid-type]
    """Log the model with its lineage and eval metrics, register a version under ``name`` (empty: the
    preset's) and run the promotion gate; returns the name, the version and the alias it holds now."""
    from thinkflow.components import runtime
    from thinkflow.config import stage_config
    from thinkflow.registry import RegisterConfig, RegisterResult
    from thinkflow.registry import register as run

    cfg = stage_config(RegisterConfig, preset, overrides, model=model.path, eval=evaluation.path, name=name or None)
    result = RegisterResult.model_validate(runtime.run_stage(run, cfg, workspace))
    reg = result.registration
    runtime.record(result, metrics, tags=runtime.registered_tags(reg))
    return (reg.name, reg.version, reg.alias)
