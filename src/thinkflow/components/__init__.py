"""KFP components: one module per stage, each a lightweight ``@dsl.component`` whose body only builds the
stage config (preset + ``overrides`` + the artifact paths) and calls the stage's library function.

Inputs and outputs are KFP artifacts (``Dataset``, ``Model``, ``Metrics``, ``Markdown``, ``HTML``) whose
URIs live under the pipeline root: an S3/MinIO bucket on the cluster, a local folder with ``kfp.local``.
The I/O of each component is listed in the top-level ``components/README.md``. Images: `images`.
"""

from thinkflow.components.build_dataset import build_dataset
from thinkflow.components.compare_study import compare_study
from thinkflow.components.evaluate import evaluate
from thinkflow.components.grpo import grpo
from thinkflow.components.images import BASE_IMAGE, TRAINER_IMAGE
from thinkflow.components.register import register
from thinkflow.components.run_context import close_run, open_run
from thinkflow.components.sft import sft
from thinkflow.components.validate_data import validate_data

# Components that run on GPU nodes (trainer image); the rest run on CPU (base image).
GPU_COMPONENTS = ("sft", "grpo", "evaluate")

__all__ = [
    "BASE_IMAGE",
    "GPU_COMPONENTS",
    "TRAINER_IMAGE",
    "build_dataset",
    "close_run",
    "compare_study",
    "evaluate",
    "grpo",
    "open_run",
    "register",
    "sft",
    "validate_data",
]
