"""Launching a training stage: in this process, on several GPUs of one machine, or on several nodes.

``launch.mode`` in the stage config picks how `thinkflow.train.sft.run` / `thinkflow.train.grpo.run` run:

- ``process`` (default): train in the calling process (one GPU, or CPU).
- ``torchrun``: start ``torchrun --nproc-per-node N -m thinkflow.cli <stage> --set …`` on this machine (one
  process per GPU of the pod; DeepSpeed ZeRO via the ``deepspeed`` key) and wait for it.
- ``trainjob``: render a Kubeflow Trainer ``TrainJob`` (torch-distributed runtime, ``launch.num_nodes``
  nodes × ``launch.trainjob.gpus_per_node`` GPUs), create it through the Kubernetes API, stream its status
  until it completes, and fail with the job's reason and message if it fails.

The launched processes get the same resolved config as ``--set key=value`` arguments (every key that
differs from its default, plus ``launch.mode=process``), so the TrainJob spec shows the full config.
With ``launch.trainjob.workspace_pvc`` the PVC is mounted at ``workspace_mount`` and becomes the
checkpoint workspace (``THINKFLOW_WORKSPACE``); for several nodes it must be ReadWriteMany, since every
rank writes its optimizer shards there. A job restarted by its JobSet resumes from that workspace.

The TrainJob is validated against the Kubeflow Trainer API models (``kubeflow-trainer-api``) before it
is sent (`thinkflow.train.trainjob`); `thinkflow.train.trainjob_client` creates and watches it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys

from thinkflow import env
from thinkflow.config import StageResult
from thinkflow.train.config import TrainStageConfig
from thinkflow.train.relaunch import LaunchError, config_overrides, result_from_output

log = logging.getLogger("thinkflow.train")


def visible_gpus() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def torchrun_command(stage: str, cfg: TrainStageConfig) -> list[str]:
    """The torchrun command line that runs ``stage`` with ``cfg`` on every GPU of this machine."""
    nproc = cfg.launch.nproc_per_node or visible_gpus() or 1
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if not (os.environ.get("PET_MASTER_ADDR") or os.environ.get("PET_RDZV_ENDPOINT")):
        cmd += ["--standalone", "--nnodes=1"]  # otherwise torchrun reads PET_* from the environment
    return [*cmd, "-m", "thinkflow.cli", stage, *config_overrides(cfg)]


def run_torchrun(stage: str, cfg: TrainStageConfig) -> StageResult:
    """Run the stage under torchrun on this machine and wait; its output goes to this process's stdout/err."""
    cmd = torchrun_command(stage, cfg)
    log.info("launching: %s", " ".join(cmd))
    launched_env = {**os.environ, env.LAUNCHED: "torchrun"}
    proc = subprocess.run(cmd, env=launched_env, check=False)
    if proc.returncode != 0:
        raise LaunchError(f"{stage}: torchrun exited with code {proc.returncode}")
    return result_from_output(stage, cfg)


def launch(stage: str, cfg: TrainStageConfig) -> StageResult:
    """Run ``stage`` as ``cfg.launch.mode`` says (``process`` mode is handled by the stage itself)."""
    mode = cfg.launch.mode
    if mode == "torchrun":
        if not _has_torch_run():
            raise LaunchError("launch.mode=torchrun: torch.distributed.run is not available")
        return run_torchrun(stage, cfg)
    if mode == "trainjob":
        from thinkflow.train.trainjob_client import run_trainjob

        return run_trainjob(stage, cfg)
    raise LaunchError(f"launch.mode={mode!r}: nothing to launch (the stage trains in this process)")


def _has_torch_run() -> bool:
    return importlib.util.find_spec("torch.distributed.run") is not None
