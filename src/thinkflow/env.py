"""The environment contract: every variable ThinkFlow reads or sets, named once.

The chart publishes most of these in the ``thinkflow-env`` ConfigMap and its Secrets; the KFP components and
the TrainJob launcher set the pipeline ones for the processes they start. Code imports the name from here
instead of spelling the string.
"""

from __future__ import annotations

# Pipeline run context (set by the components / `thinkflow run`, read by stages and the registry).
WORKSPACE = "THINKFLOW_WORKSPACE"  # shared folder of one pipeline run (checkpoints, parent-run file)
PARENT_RUN_ID = "THINKFLOW_PARENT_RUN_ID"  # the MLflow parent run that stage runs nest under
PIPELINE_RUN_ID = "THINKFLOW_PIPELINE_RUN_ID"  # the KFP run id, recorded in lineage and TrainJob names
IMAGE = "THINKFLOW_IMAGE"  # the image a component runs in, recorded in the version's lineage
GIT_SHA = "THINKFLOW_GIT_SHA"  # the source commit baked into the image
LAUNCHED = "THINKFLOW_LAUNCHED"  # set by the launcher inside the processes it starts
USER = "THINKFLOW_USER"  # who promotes (audit tag), falls back to the login name

# Platform endpoints and storage (the chart's thinkflow-env ConfigMap).
BUCKET = "THINKFLOW_BUCKET"  # the S3 bucket the shipped presets' s3://thinkflow/ paths are pointed at
CACHE = "THINKFLOW_CACHE"  # local cache of downloaded models, datasets and images
REWARD_URL = "THINKFLOW_REWARD_URL"  # the reward-model Service (rewardModel.enabled)
REWARD_API_KEY = "THINKFLOW_REWARD_API_KEY"  # its bearer token
SERVING_API_KEY = "THINKFLOW_SERVING_API_KEY"  # bearer token of the serving endpoint (serve-sync smoke test)
TEACHER_BASE_URL = "THINKFLOW_{name}_BASE_URL"  # one per inference model, e.g. THINKFLOW_REASONER_BASE_URL

# CLI behaviour.
DEBUG = "THINKFLOW_DEBUG"  # print tracebacks instead of one-line errors

# Variables owned by other programs that ThinkFlow sets or reads.
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
MLFLOW_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
MLFLOW_S3_ENDPOINT_URL = "MLFLOW_S3_ENDPOINT_URL"  # where MLflow's own S3 client sends artifacts
MLFLOW_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")  # basic auth of the tracking server
MLFLOW_RUN_ID = "MLFLOW_RUN_ID"  # MLflow resumes this run in start_run()
MLFLOW_PARENT_RUN_IDS = (PARENT_RUN_ID, "MLFLOW_PARENT_RUN_ID", MLFLOW_RUN_ID)  # first set wins
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"
AWS_CREDENTIALS = (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_REGION = (AWS_DEFAULT_REGION, "AWS_REGION")  # first set wins
