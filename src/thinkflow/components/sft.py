"""``sft``: `thinkflow.train.sft.run` -> a ``Model`` artifact (weights, processor, ``lineage.json``)."""

from typing import NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from thinkflow.components.images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def sft(
    data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    preset: str = "tiny-sft",
    overrides: Optional[dict] = None,
    base_model: Optional[Input[Model]] = None,
    base_model_uri: str = "",
    label: str = "",
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
) -> NamedTuple("Outputs", model_uri=str):  # type: ignore[valid-type]
    """Supervised fine-tuning on the ``sft`` split. The base model is the ``base_model`` artifact, else
    ``base_model_uri`` (dir or s3://), else the preset's. Checkpoints go to the run's workspace, so a
    retried task resumes where the killed pod stopped."""
    from thinkflow.components import runtime
    from thinkflow.train.sft import SFTConfig, run

    io = {"base_model": base_model, "base_model_uri": base_model_uri, "data": data, "model": model, "metrics": metrics}
    return (runtime.train("sft", run, SFTConfig, preset, overrides, **io, label=label, workspace=workspace),)
