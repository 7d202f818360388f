"""KFP components: one module per stage, each a lightweight ``@dsl.component`` whose body only builds the
stage config (preset + ``overrides`` + the artifact paths, `thinkflow.config.stage_config`) and calls the stage's
library function.

Import a component from its module: ``from thinkflow.components.grpo import grpo`` (the pipelines take
them all from `thinkflow.pipelines.steps`). Inputs and outputs are KFP artifacts (``Dataset``, ``Model``,
``Metrics``, ``Markdown``, ``HTML``) whose URIs live under the pipeline root: an S3/MinIO bucket on the
cluster, a local folder with ``kfp.local``. The I/O of each component is listed in the top-level
``components/README.md``; the images are named in `thinkflow.components.images`.

This package imports nothing from KFP by itself: inside a running component KFP sets ``_KFP_RUNTIME=true``
(``kfp.dsl`` then has no ``component`` decorator), and the bodies import `thinkflow.components.runtime`.
"""
