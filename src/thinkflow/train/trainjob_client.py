"""A stage's TrainJob on the cluster: create it (or re-attach to the one of an earlier attempt of the same
pipeline task), stream its status until it completes, fail with the job's reason and message, and delete it
when this process is stopped."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from thinkflow import storage
from thinkflow.config import StageResult
from thinkflow.kube import kube_api_client
from thinkflow.train.config import TrainStageConfig
from thinkflow.train.relaunch import LaunchError, result_from_output
from thinkflow.train.trainjob import CHAIN_LABEL, TRAINER_GROUP, TRAINER_VERSION, TRAINJOB_PLURAL, render_trainjob

log = logging.getLogger("thinkflow.train")


def create_trainjob(body: dict[str, Any], *, api_client: Any = None) -> dict[str, Any]:
    """Create the TrainJob through the Kubernetes API; returns the object the API server stored."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client or kube_api_client())
    namespace = body["metadata"]["namespace"]
    try:
        created: dict[str, Any] = api.create_namespaced_custom_object(
            TRAINER_GROUP, TRAINER_VERSION, namespace, TRAINJOB_PLURAL, body
        )
    except ApiException as exc:
        raise LaunchError(
            f"cannot create TrainJob {namespace}/{body['metadata']['name']}: {exc.status} {exc.reason}: "
            f"{_api_message(exc)}"
        ) from None
    log.info("created TrainJob %s/%s", namespace, body["metadata"]["name"])
    return created


def delete_trainjob(name: str, namespace: str, *, api_client: Any = None) -> bool:
    """Delete the TrainJob and, in the background, the Jobs and pods it owns. False if it was already gone."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client or kube_api_client())
    try:
        api.delete_namespaced_custom_object(
            TRAINER_GROUP, TRAINER_VERSION, namespace, TRAINJOB_PLURAL, name, propagation_policy="Background"
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise LaunchError(f"cannot delete TrainJob {namespace}/{name}: {exc.status} {exc.reason}") from None
    log.info("deleted TrainJob %s/%s", namespace, name)
    return True


def create_or_attach(body: dict[str, Any], *, api_client: Any = None) -> dict[str, Any]:
    """Create the TrainJob; if a job of the same attempt chain exists (a retried pipeline task), attach to it
    while it runs or has completed, or replace it when it failed (the new one resumes from the checkpoints).
    A same-named job of another chain (or none) is an error, as before."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    chain = body["metadata"].get("labels", {}).get(CHAIN_LABEL)
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    api_client = api_client or kube_api_client()
    try:
        return create_trainjob(body, api_client=api_client)
    except LaunchError as exc:
        if not chain or " 409 " not in f" {exc} ":
            raise
    api = client.CustomObjectsApi(api_client)
    try:
        existing: dict[str, Any] = api.get_namespaced_custom_object(
            TRAINER_GROUP, TRAINER_VERSION, namespace, TRAINJOB_PLURAL, name
        )
    except ApiException as exc:
        raise LaunchError(f"cannot read TrainJob {namespace}/{name}: {exc.status} {exc.reason}") from None
    if existing.get("metadata", {}).get("labels", {}).get(CHAIN_LABEL) != chain:
        raise LaunchError(f"TrainJob {namespace}/{name} exists and belongs to another run; delete it or set a name")
    if _condition(existing, "Failed") is None:
        log.info("re-attaching to TrainJob %s/%s (an earlier attempt of this task created it)", namespace, name)
        return existing
    log.info("TrainJob %s/%s of an earlier attempt failed: replacing it", namespace, name)
    delete_trainjob(name, namespace, api_client=api_client)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            return create_trainjob(body, api_client=api_client)
        except LaunchError as exc:
            if " 409 " not in f" {exc} ":
                raise
            time.sleep(1)  # finalizers still running
    raise LaunchError(f"TrainJob {namespace}/{name} of a failed attempt was not deleted within 120s")


@contextlib.contextmanager
def deleted_on_termination(name: str, namespace: str, *, api_client: Any = None) -> Iterator[None]:
    """While the body runs, SIGTERM (KFP cancelling the run, Kubernetes stopping the pod) and Ctrl-C delete the
    TrainJob before the process exits, so no multi-node GPU job is left running. Signal handlers can only be set
    from the main thread; elsewhere the job is deleted on KeyboardInterrupt only."""
    previous = None
    in_main = threading.current_thread() is threading.main_thread()

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    if in_main:
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except (_Terminated, KeyboardInterrupt) as exc:
        log.warning("stopping: deleting TrainJob %s/%s", namespace, name)
        delete_trainjob(name, namespace, api_client=api_client)
        if isinstance(exc, _Terminated):
            raise SystemExit(128 + exc.signum) from None
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _api_message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message", exc.body))
    except (TypeError, ValueError, AttributeError):
        return str(exc.body)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def describe_status(obj: dict[str, Any]) -> str:
    """A one-line summary of a TrainJob's status: its true conditions and its child jobs' pod counts."""
    status = obj.get("status") or {}
    conditions = [
        f"{c.get('type')}" + (f"({c.get('reason')})" if c.get("reason") else "")
        for c in status.get("conditions") or []
        if c.get("status") == "True"
    ]
    jobs = [
        f"{j.get('name')}: active={j.get('active', 0)} ready={j.get('ready', 0)} "
        f"succeeded={j.get('succeeded', 0)} failed={j.get('failed', 0)}"
        for j in status.get("jobsStatus") or []
    ]
    return "; ".join(filter(None, [", ".join(conditions) or "Pending", *jobs]))


class TrainJobFailed(LaunchError):
    """The TrainJob reached the Failed condition (or was deleted while waiting)."""


def wait_trainjob(
    name: str,
    namespace: str,
    *,
    api_client: Any = None,
    timeout_s: float | None = None,
    on_status: Any = None,
) -> dict[str, Any]:
    """Watch a TrainJob until it completes; return it. Streams each status change to the log (and ``on_status``).

    Raises `TrainJobFailed` with the job's reason and message when it fails or is deleted, `LaunchError`
    on timeout.
    """
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client or kube_api_client())
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None

    def report(obj: dict[str, Any]) -> None:
        nonlocal last
        line = describe_status(obj)
        if line != last:
            last = line
            log.info("TrainJob %s/%s: %s", namespace, name, line)
            if on_status is not None:
                on_status(line)

    def check(obj: dict[str, Any]) -> bool:
        report(obj)
        failed = _condition(obj, "Failed")
        if failed:
            raise TrainJobFailed(
                f"TrainJob {namespace}/{name} failed: {failed.get('reason', 'Failed')}: {failed.get('message', '')}"
            )
        return _condition(obj, "Complete") is not None

    while True:
        try:
            obj = api.get_namespaced_custom_object(TRAINER_GROUP, TRAINER_VERSION, namespace, TRAINJOB_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                raise TrainJobFailed(f"TrainJob {namespace}/{name} no longer exists (deleted while waiting)") from None
            raise LaunchError(f"cannot read TrainJob {namespace}/{name}: {exc.status} {exc.reason}") from None
        if check(obj):
            return obj
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise LaunchError(f"TrainJob {namespace}/{name} did not finish within {timeout_s:.0f}s ({last})")
        stream = watch.Watch()
        window = int(max(1, min(60, remaining if remaining is not None else 60)))
        try:
            for event in stream.stream(
                api.list_namespaced_custom_object,
                TRAINER_GROUP,
                TRAINER_VERSION,
                namespace,
                TRAINJOB_PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
                timeout_seconds=window,
            ):
                if event.get("type") == "DELETED":
                    raise TrainJobFailed(f"TrainJob {namespace}/{name} was deleted while waiting")
                if event.get("type") in {"ADDED", "MODIFIED"} and check(event["object"]):
                    stream.stop()
                    return dict(event["object"])
        except ApiException as exc:
            if exc.status != 410:  # 410 Gone: the resource version expired; read again and re-watch
                raise LaunchError(f"cannot watch TrainJob {namespace}/{name}: {exc.status} {exc.reason}") from None
        finally:
            stream.stop()


def run_trainjob(stage: str, cfg: TrainStageConfig, *, api_client: Any = None) -> StageResult:
    """Render, create and (unless ``launch.trainjob.wait`` is false) wait for the stage's TrainJob."""
    settings = cfg.launch.trainjob
    body = render_trainjob(stage, cfg)
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    api_client = api_client or kube_api_client()
    create_or_attach(body, api_client=api_client)
    artifacts = {"trainjob": f"{namespace}/{name}"}
    if not settings.wait:
        return StageResult(stage=stage, output=cfg.output_dir, artifacts=artifacts)
    with deleted_on_termination(name, namespace, api_client=api_client):
        wait_trainjob(name, namespace, api_client=api_client, timeout_s=settings.timeout_s)
    if storage.is_remote(cfg.output_dir) or os.path.exists(cfg.output_dir):
        return result_from_output(stage, cfg, artifacts)
    log.warning("%s is not reachable from here; the result carries no metrics", cfg.output_dir)
    return StageResult(stage=stage, output=cfg.output_dir, artifacts=artifacts)
