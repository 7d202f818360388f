"""Logging a checkpoint directory with MLflow's transformers flavor, path-based (weights copied, not loaded).

Logged from the directory, the version's weights are byte-identical to what training wrote, so serving can
check a download against the version's content hash (`thinkflow.serving.resolve`).

**The MLflow x transformers 5 incompatibility this module adapts to.** Given a directory,
``mlflow.transformers.log_model`` calls ``build_flavor_config_from_local_checkpoint``
(mlflow 3.17.2, ``mlflow/transformers/__init__.py`` line 705), which reads the pipeline class name as
``pipelines.check_task(task)[1]["impl"].__name__`` (``mlflow/transformers/flavor_config.py`` lines 212-213).
transformers 5 lists its pipeline implementations lazily, as dotted strings
(transformers 5.23.0, ``transformers/pipelines/__init__.py`` lines 184-185 and, for this task, line 287:
``"impl": "transformers.pipelines.image_text_to_text.ImageTextToTextPipeline"``), and resolves them only when
a pipeline is built (``_resolve_impl``, line 102, used at line 1074). ``str`` has no ``__name__``, so logging
fails with ``AttributeError``. `resolve_pipeline_class` replaces the task's dotted string in transformers'
registry by the class it names — the form ``PipelineRegistry.register_pipeline`` stores for custom pipelines
(``transformers/pipelines/base.py`` line 1404) and that ``_resolve_impl`` passes through — once, explicitly,
before logging. No patching: transformers behaves the same afterwards; MLflow sees a class.
``tests/unit/test_registry_flavor.py`` shows the failure without it (and tells when MLflow no longer needs it).
"""

from __future__ import annotations

import importlib
from importlib import metadata
from pathlib import Path
from typing import Any

# What loading the logged model needs, pinned to the installed versions.
REQUIREMENTS = ("thinkflow", "torch", "transformers", "accelerate", "pillow")


def resolve_pipeline_class(task: str) -> type:
    """The pipeline class of ``task``, set in transformers' task registry in place of its lazy dotted name."""
    from transformers import pipelines

    _, entry, _ = pipelines.check_task(task)  # the registry's own dict for the task (aliases resolved)
    impl = entry["impl"]
    if isinstance(impl, str):
        module, _, name = impl.rpartition(".")
        impl = getattr(importlib.import_module(module), name)
        entry["impl"] = impl
    return impl  # type: ignore[no-any-return]


def pip_requirements() -> list[str]:
    """What loading the logged model needs, pinned to the installed versions."""
    reqs = []
    for name in REQUIREMENTS:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def model_card(text: str) -> Any:
    """A Hugging Face model card holding ``text`` (written offline: no hub lookup)."""
    from huggingface_hub import ModelCard

    return ModelCard(text)


def log_model(model_dir: Path, *, task: str, card_text: str, metadata_: dict[str, Any]) -> Any:
    """Log the checkpoint directory with the transformers flavor into the active run; returns MLflow's ModelInfo."""
    import mlflow

    from thinkflow.models.load import load_processor

    processor = load_processor(model_dir)
    resolve_pipeline_class(task)
    return mlflow.transformers.log_model(
        str(model_dir),
        name="model",
        task=task,
        processor=processor,
        model_card=model_card(card_text),
        pip_requirements=pip_requirements(),
        metadata=metadata_,
    )
