"""``grpo``: `thinkflow.train.grpo.run` -> a ``Model`` artifact (weights, processor, ``lineage.json``)."""

from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from thinkflow.components.images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def grpo(
    data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    preset: str = "tiny-grpo",
    overrides: Optional[dict] = None,
    base_model: Optional[Input[Model]] = None,
    base_model_uri: str = "",
    label: str = "",
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
) -> NamedTuple("Outputs", model_uri=str):  # type: ignore[valid-type]
    """GRPO with the mixed reward on the ``rl`` split (the paper's recipe). The base model is the
    ``base_model`` artifact (an SFT model), else ``base_model_uri`` (dir or s3://), else the preset's.
    Checkpoints go to the run's workspace, so a retried task resumes where the killed pod stopped."""
    from thinkflow.components import runtime
    from thinkflow.train.grpo import GRPOStageConfig, run

    io = {"base_model": base_model, "base_model_uri": base_model_uri, "data": data, "model": model, "metrics": metrics}
    return (runtime.train("grpo", run, GRPOStageConfig, preset, overrides, **io, label=label, workspace=workspace),)
