"""The container images the components run in: names and tags are set here and nowhere else.

The base image (CPU) runs data, validation, registration and the study comparison; the trainer image
(CUDA, torch, TRL, DeepSpeed, vLLM) runs SFT, GRPO and evaluation. Both are built from ``images/`` and
pushed by ``images/build.sh REGISTRY [TAG]``; the tag defaults to the package version, which is also the
Helm chart's ``appVersion``. To compile for another registry or tag use ``thinkflow compile --registry
--tag`` (the compiled packages committed in ``pipelines/`` use the defaults below).
"""

from __future__ import annotations

from thinkflow import __version__

REGISTRY = "ghcr.io/thinkflow"
TAG = __version__
BASE_REPOSITORY = "thinkflow-base"
TRAINER_REPOSITORY = "thinkflow-trainer"


def image(repository: str, registry: str = REGISTRY, tag: str = TAG) -> str:
    """``registry/repository:tag``."""
    return f"{registry.rstrip('/')}/{repository}:{tag}"


BASE_IMAGE = image(BASE_REPOSITORY)
TRAINER_IMAGE = image(TRAINER_REPOSITORY)
