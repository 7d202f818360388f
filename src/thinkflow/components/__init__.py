"""KFP components: one module per stage, each a lightweight ``@dsl.component`` whose body only builds the
stage config (preset + ``overrides`` + the artifact paths) and calls the stage's library function.

Inputs and outputs are KFP artifacts (``Dataset``, ``Model``, ``Metrics``, ``Markdown``, ``HTML``) whose
URIs live under the pipeline root: an S3/MinIO bucket on the cluster, a local folder with ``kfp.local``.
The I/O of each component is listed in the top-level ``components/README.md``. Images: `images`.

The component objects are imported lazily: inside a running component KFP sets ``_KFP_RUNTIME=true``
and ``kfp.dsl`` has no ``component`` decorator, while the bodies import `thinkflow.components.runtime`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfp.dsl.python_component import PythonComponent

    build_dataset: PythonComponent
    close_run: PythonComponent
    compare_study: PythonComponent
    evaluate: PythonComponent
    grpo: PythonComponent
    open_run: PythonComponent
    register: PythonComponent
    sft: PythonComponent
    validate_data: PythonComponent

# component name -> module defining it
COMPONENTS = {
    "build_dataset": "build_dataset",
    "validate_data": "validate_data",
    "sft": "sft",
    "grpo": "grpo",
    "evaluate": "evaluate",
    "register": "register",
    "compare_study": "compare_study",
    "open_run": "run_context",
    "close_run": "run_context",
}
# Components that run on GPU nodes (trainer image); the rest run on CPU (base image).
GPU_COMPONENTS = ("sft", "grpo", "evaluate")

__all__ = ["COMPONENTS", "GPU_COMPONENTS", *COMPONENTS]


def __getattr__(name: str) -> Any:
    if name in COMPONENTS:
        module = importlib.import_module(f"thinkflow.components.{COMPONENTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'thinkflow.components' has no attribute {name!r}")
