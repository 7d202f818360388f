"""The adapter between MLflow's transformers flavor and transformers 5's lazy pipeline registry.

MLflow 3.17.2 builds the flavor of a model logged from a directory with
``pipelines.check_task(task)[1]["impl"].__name__`` (``mlflow/transformers/flavor_config.py`` lines 212-213);
transformers 5.23.0 keeps ``impl`` as a dotted string (``transformers/pipelines/__init__.py`` line 287).
The first test is that incompatibility, as shipped; if it stops failing, MLflow handles the string itself and
`thinkflow.registry.flavor.resolve_pipeline_class` can go.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TASK = "image-text-to-text"
IMPL = "transformers.pipelines.image_text_to_text.ImageTextToTextPipeline"


@pytest.fixture
def lazy_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """transformers' registry entry of the task as transformers 5 ships it (a dotted string), restored after."""
    from transformers import pipelines

    _, entry, _ = pipelines.check_task(TASK)
    monkeypatch.setitem(entry, "impl", IMPL)
    return entry


def test_mlflow_cannot_read_a_lazy_pipeline_class(lazy_registry: dict, tiny_model: Path) -> None:
    from mlflow.transformers.flavor_config import build_flavor_config_from_local_checkpoint

    with pytest.raises(AttributeError, match="'str' object has no attribute '__name__'"):
        build_flavor_config_from_local_checkpoint(str(tiny_model), TASK)


def test_resolving_the_class_makes_the_flavor_and_leaves_transformers_working(
    lazy_registry: dict, tiny_model: Path
) -> None:
    from mlflow.transformers.flavor_config import build_flavor_config_from_local_checkpoint
    from transformers import pipelines
    from transformers.pipelines.image_text_to_text import ImageTextToTextPipeline

    from thinkflow.registry.flavor import resolve_pipeline_class

    assert resolve_pipeline_class(TASK) is ImageTextToTextPipeline
    assert lazy_registry["impl"] is ImageTextToTextPipeline  # in transformers' own registry, not a copy
    assert resolve_pipeline_class(TASK) is ImageTextToTextPipeline  # idempotent
    flavor = build_flavor_config_from_local_checkpoint(str(tiny_model), TASK)
    assert flavor["instance_type"] == "ImageTextToTextPipeline" and flavor["task"] == TASK
    # transformers resolves a class as it resolves its string (pipelines._resolve_impl passes classes through)
    assert pipelines._resolve_impl(lazy_registry["impl"]) is ImageTextToTextPipeline
