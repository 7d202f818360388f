"""``thinkflow serve-sync``: roll the serving Deployments to the version their alias names, smoke-test, record.

A controller loop (the chart runs it as a Deployment). Every ``interval_s`` it, for each watched
``models:/NAME@ALIAS`` and its Deployment:

1. observes: the version holding the alias (MLflow REST), that version's ``serving_failed`` tag, and the
   Deployment (pod-template annotation ``thinkflow.io/model-version``, ``spec.paused``, rollout status, and its
   own bookkeeping annotations ``thinkflow.io/served-version`` / ``thinkflow.io/rollout-started`` on the
   Deployment's metadata, which do not restart pods);
2. decides with the pure `decide` (no I/O; like `thinkflow.registry.gate.decide`);
3. applies the plan with `apply`: ``roll`` patches the pod-template annotation (Kubernetes then does a
   rolling update; the chart sets maxUnavailable 0) and un-pauses; ``check`` sends the smoke request
   (`thinkflow.serving.smoke`) to the Service once the rollout completed and decides again with its result;
   ``served`` appends to the version's ``thinkflow.served_at`` history tag and records the served version;
   ``fail`` pauses the Deployment (``spec.paused``) and tags the version ``serving_failed`` with the reason.

All state lives in the registry and on the Deployment, so the loop can restart at any point. A version tagged
``serving_failed`` is never rolled out again (clear the tag to retry it); moving the alias to another version
(``thinkflow promote NAME VERSION``: the rollback) un-pauses the Deployment and rolls that version.

Limits, stated plainly: the smoke test runs once the rollout completed, i.e. after the new pods passed their
readiness probe (model loaded) and took traffic; pausing stops the rollout but does not move traffic back:
the rollback is promoting the previous version. Patches are JSON patches guarded by a ``test`` of the
Deployment's ``resourceVersion`` (a concurrent change makes the patch fail and the next tick decides again).
RBAC: ``get`` and ``patch`` on the named Deployments only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from thinkflow import env
from thinkflow.config import StageConfig
from thinkflow.serving.resolve import ServingError, parse_model_uri
from thinkflow.serving.smoke import SmokeResult, smoke_request

log = logging.getLogger(__name__)

VERSION_ANNOTATION = "thinkflow.io/model-version"  # on the pod template: changing it rolls the pods
SERVED_ANNOTATION = "thinkflow.io/served-version"  # on the Deployment: the rolled-out version, once it passed
ROLLOUT_ANNOTATION = "thinkflow.io/rollout-started"  # on the Deployment: epoch seconds the current rollout began
SERVED_AT_TAG = "thinkflow.served_at"  # version tag: JSON list of {"at", "deployment", "alias"}
FAILED_TAG = "serving_failed"  # version tag: why the version was not served
MAX_TAG_CHARS = 5000
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

Action = Literal["in-sync", "roll", "wait", "check", "served", "fail", "blocked"]


class WatchTarget(BaseModel):
    """One alias and the Deployment that serves it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        default="models:/thinkflow-vlm@champion", min_length=1, description="The alias to follow: models:/NAME@ALIAS."
    )
    deployment: str = Field(
        default="thinkflow-serving-champion", min_length=1, description="The Deployment that serves the alias."
    )
    endpoint: str = Field(
        default="http://thinkflow-serving-champion:8000/v1",
        description="The Deployment's Service (OpenAI base URL) the smoke request goes to.",
    )


class SmokeConfig(BaseModel):
    """The smoke request sent to new pods before a version is marked served."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(
        default=1024, ge=1, description="Generation budget: room for the reasoning before </answer>."
    )
    timeout_s: float = Field(default=300.0, gt=0, description="Seconds the smoke request may take.")
    api_key_env: str = Field(
        default=env.SERVING_API_KEY, description="Environment variable holding the endpoint's bearer token."
    )


class SyncConfig(StageConfig):
    """What ``serve-sync`` watches and how often. Every key has a default."""

    watch: list[WatchTarget] = Field(
        default_factory=lambda: [WatchTarget()], description="The aliases to follow, each with its Deployment."
    )
    namespace: str | None = Field(
        default=None,
        description='Namespace of the Deployments (default: the pod\'s own, from its service account, else "default").',
    )
    interval_s: float = Field(default=30.0, gt=0, description="Seconds between two polls of the aliases.")
    rollout_timeout_s: float = Field(
        default=1800.0, gt=0, description="A rollout still not answering the smoke request after this fails."
    )
    smoke: SmokeConfig = Field(default_factory=SmokeConfig, description="The smoke request sent to new pods.")
    heartbeat_file: str | None = Field(
        default=None, description="Touched after every poll (the Deployment's liveness probe reads its age)."
    )


@dataclass
class DeploymentState:
    """What `decide` needs to know about a Deployment."""

    template_version: str | None
    served_version: str | None
    paused: bool
    rollout_complete: bool
    rollout_started: float | None
    resource_version: str = ""
    has_template_annotations: bool = True
    has_annotations: bool = True


@dataclass
class Observation:
    """Everything one tick saw for one target (plus the smoke result once one was taken)."""

    alias_version: str | None  # None: the alias is not set
    failed_reason: str | None  # the alias version's serving_failed tag
    deployment: DeploymentState
    now: float
    smoke: SmokeResult | None = None


@dataclass
class Plan:
    """What to do for one target, and why."""

    action: Action
    version: str | None
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)


def decide(obs: Observation, rollout_timeout_s: float) -> Plan:
    """The next step for one target (pure: reads the observation, changes nothing)."""
    v, dep = obs.alias_version, obs.deployment
    if v is None:
        return Plan("blocked", None, "the alias is not set; nothing to serve")
    if obs.failed_reason is not None:
        if dep.template_version == v and not dep.paused:
            return Plan("fail", v, obs.failed_reason)  # tagged failed while rolled out: stop the rollout
        return Plan("blocked", v, f"version {v} is tagged {FAILED_TAG} ({obs.failed_reason}); promote another")
    if dep.template_version != v:
        return Plan("roll", v, f"alias moved to version {v} (pods run {dep.template_version or 'none'})")
    if dep.paused:
        return Plan("roll", v, f"version {v} is rolled out but the Deployment is paused; resuming")
    if dep.served_version == v:
        return Plan("in-sync", v, f"version {v} is served")
    elapsed = obs.now - dep.rollout_started if dep.rollout_started is not None else 0.0
    late = elapsed > rollout_timeout_s
    if not dep.rollout_complete:
        if late:
            return Plan("fail", v, f"rollout of version {v} not complete after {elapsed:.0f}s")
        return Plan("wait", v, f"rolling out version {v}")
    if obs.smoke is None:
        return Plan("check", v, f"rollout of version {v} complete; smoke test")
    if obs.smoke.version != v:
        if late:
            return Plan("fail", v, f"endpoint still answers as version {obs.smoke.version} after {elapsed:.0f}s")
        return Plan("wait", v, f"endpoint answers as version {obs.smoke.version}, waiting for {v}")
    if not obs.smoke.ok:
        return Plan("fail", v, f"smoke test failed: {obs.smoke.reason}")
    return Plan("served", v, f"version {v} answers well formed")


# --- observing and applying ------------------------------------------------------------------------------


def default_namespace() -> str:
    """The pod's namespace (service-account mount), else ``default``."""
    try:
        return SA_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def deployment_state(dep: dict[str, Any]) -> DeploymentState:
    """`DeploymentState` from a Deployment object (as the API returns it)."""
    meta = dep.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    spec = dep.get("spec") or {}
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    template_annotations = template_meta.get("annotations")
    status = dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    complete = (
        int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
        and int(status.get("updatedReplicas", 0)) >= want
        and int(status.get("replicas", 0)) == int(status.get("updatedReplicas", 0))
        and int(status.get("availableReplicas", 0)) >= want
    )
    try:
        started: float | None = float(annotations[ROLLOUT_ANNOTATION])
    except (KeyError, ValueError):
        started = None
    return DeploymentState(
        template_version=(template_annotations or {}).get(VERSION_ANNOTATION) or None,
        served_version=annotations.get(SERVED_ANNOTATION) or None,
        paused=bool(spec.get("paused", False)),
        rollout_complete=complete,
        rollout_started=started,
        resource_version=str(meta.get("resourceVersion", "")),
        has_template_annotations=template_annotations is not None,
        has_annotations="annotations" in meta and meta["annotations"] is not None,
    )


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def deployment_patch(
    state: DeploymentState,
    *,
    template: dict[str, str] | None = None,
    meta: dict[str, str] | None = None,
    paused: bool | None = None,
) -> list[dict[str, Any]]:
    """A JSON patch (RFC 6902) guarded by the observed ``resourceVersion``."""
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": state.resource_version}]
    if template:
        if not state.has_template_annotations:
            ops.append({"op": "add", "path": "/spec/template/metadata/annotations", "value": {}})
        for key, value in template.items():
            ops.append({"op": "add", "path": f"/spec/template/metadata/annotations/{_escape(key)}", "value": value})
    if meta:
        if not state.has_annotations:
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
        for key, value in meta.items():
            ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value})
    if paused is not None:
        ops.append({"op": "add", "path": "/spec/paused", "value": paused})
    return ops


class Kube:
    """The two Deployment calls serve-sync makes (get, patch), through the kubernetes client."""

    def __init__(self, api_client: Any | None = None) -> None:
        from kubernetes import client

        from thinkflow.kube import kube_api_client

        self.apps = client.AppsV1Api(api_client or kube_api_client())

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        except ApiException as exc:
            raise ServingError(f"cannot read Deployment {namespace}/{name}: {exc.status} {exc.reason}") from None
        data: dict[str, Any] = json.loads(resp.data)
        return data

    def patch(self, name: str, namespace: str, ops: list[dict[str, Any]]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:  # a list body is sent as application/json-patch+json
            self.apps.patch_namespaced_deployment(name, namespace, ops, _preload_content=False)
        except ApiException as exc:
            raise ServingError(f"cannot patch Deployment {namespace}/{name}: {exc.status} {exc.reason}") from None


def served_history(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The version's ``thinkflow.served_at`` history (oldest first; unreadable values count as empty)."""
    try:
        data = json.loads(tags.get(SERVED_AT_TAG, "[]"))
    except ValueError:
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _append_history(history: list[dict[str, Any]], entry: dict[str, Any]) -> str:
    items = [*history, entry]
    text = json.dumps(items)
    while len(text) > MAX_TAG_CHARS and len(items) > 1:
        items = items[1:]  # keep the newest entries within the tag limit
        text = json.dumps(items)
    return text


def observe(client: Any, kube: Kube, target: WatchTarget, namespace: str, now: float) -> tuple[Observation, Any]:
    """One target's observation and the alias's ModelVersion (None when the alias is unset)."""
    from thinkflow.registry.gate import current_champion

    name, alias, _ = parse_model_uri(target.model)
    if alias is None:
        raise ServingError(f"watch: {target.model} names a version; serve-sync watches aliases (models:/NAME@ALIAS)")
    mv = current_champion(client, name, alias)
    failed = (mv.tags or {}).get(FAILED_TAG) if mv is not None else None
    dep = deployment_state(kube.get(target.deployment, namespace))
    version = str(mv.version) if mv is not None else None
    return Observation(version, failed, dep, now), mv


def apply(plan: Plan, client: Any, kube: Kube, target: WatchTarget, namespace: str, obs: Observation) -> None:
    """Carry out ``plan`` (``roll``, ``served``, ``fail``; the others change nothing)."""
    name, alias, _ = parse_model_uri(target.model)
    dep = obs.deployment
    where = f"{namespace}/{target.deployment}"
    if plan.action == "roll":
        ops = deployment_patch(
            dep,
            template={VERSION_ANNOTATION: str(plan.version)},
            meta={ROLLOUT_ANNOTATION: repr(obs.now), SERVED_ANNOTATION: ""},  # served again only after its smoke test
            paused=False,
        )
        kube.patch(target.deployment, namespace, ops)
    elif plan.action == "served":
        # the Deployment first, then the registry: the served_at entry is what `promote --wait-serving` waits for
        kube.patch(target.deployment, namespace, deployment_patch(dep, meta={SERVED_ANNOTATION: str(plan.version)}))
        mv = client.get_model_version(name, str(plan.version))
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "deployment": where, "alias": alias}
        value = _append_history(served_history(mv.tags or {}), entry)
        client.set_model_version_tag(name, str(plan.version), SERVED_AT_TAG, value)
    elif plan.action == "fail":
        kube.patch(target.deployment, namespace, deployment_patch(dep, paused=True))
        if plan.version is not None:
            client.set_model_version_tag(name, str(plan.version), FAILED_TAG, f"{where}: {plan.reason}"[:MAX_TAG_CHARS])
    log_fn = log.warning if plan.action in ("fail", "blocked") else log.info
    log_fn("%s (%s): %s: %s", where, target.model, plan.action, plan.reason)


def sync_target(cfg: SyncConfig, target: WatchTarget, *, client: Any, kube: Kube, namespace: str) -> Plan:
    """One tick for one target: observe, decide, smoke-test when the plan asks for it, apply."""
    obs, _ = observe(client, kube, target, namespace, time.time())
    plan = decide(obs, cfg.rollout_timeout_s)
    if plan.action == "check":
        name, _, _ = parse_model_uri(target.model)
        obs.smoke = smoke_request(
            target.endpoint,
            name,
            api_key=os.environ.get(cfg.smoke.api_key_env),
            max_tokens=cfg.smoke.max_tokens,
            timeout_s=cfg.smoke.timeout_s,
        )
        plan = decide(obs, cfg.rollout_timeout_s)
    apply(plan, client, kube, target, namespace, obs)
    return plan


def sync_once(cfg: SyncConfig, *, client: Any | None = None, kube: Kube | None = None) -> list[Plan]:
    """One tick over every watched target; a failing target is logged and does not stop the others."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = client or MlflowClient()
    kube = kube or Kube()
    namespace = cfg.namespace or default_namespace()
    plans = []
    for target in cfg.watch:
        try:
            plans.append(sync_target(cfg, target, client=client, kube=kube, namespace=namespace))
        except (ServingError, MlflowException) as exc:
            log.error("%s: %s", target.deployment, exc)
            plans.append(Plan("blocked", None, str(exc)))
        except Exception as exc:  # a controller outlives transient faults (connection resets, timeouts)
            log.exception("%s: unexpected error; retrying next tick", target.deployment)
            plans.append(Plan("blocked", None, f"{type(exc).__name__}: {exc}"))
    return plans


def run(
    cfg: SyncConfig, *, stop: threading.Event | None = None, client: Any | None = None, kube: Kube | None = None
) -> None:
    """Run `sync_once` every ``cfg.interval_s`` until ``stop`` is set (forever in the Deployment)."""
    from mlflow import MlflowClient

    stop = stop or threading.Event()
    client = client or MlflowClient()
    kube = kube or Kube()
    for target in cfg.watch:
        parse_model_uri(target.model)  # bad config fails at start, naming the key
    while not stop.is_set():
        sync_once(cfg, client=client, kube=kube)
        if cfg.heartbeat_file:
            Path(cfg.heartbeat_file).touch()
        stop.wait(cfg.interval_s)


# --- waiting for a promotion to be served --------------------------------------------------------------------


class ServingFailed(ServingError):
    """The version was tagged ``serving_failed`` by serve-sync."""


def wait_serving(
    name: str,
    version: str,
    *,
    served_before: int,
    timeout_s: float = 1800.0,
    poll_s: float = 5.0,
    client: Any | None = None,
) -> dict[str, Any]:
    """Wait until serve-sync records ``version`` as served (a new ``thinkflow.served_at`` entry after
    ``served_before`` entries), or raise `ServingFailed` when it tags the version ``serving_failed``.

    Needs only the registry (no cluster or endpoint access): the entry is written after the smoke request to
    the new pods answered well formed. Returns the new history entry.
    """
    from mlflow import MlflowClient

    client = client or MlflowClient()
    deadline = time.monotonic() + timeout_s
    while True:
        tags = client.get_model_version(name, str(version)).tags or {}
        history = served_history(tags)
        if len(history) > served_before:
            return history[-1]
        if FAILED_TAG in tags:
            raise ServingFailed(f"{name} version {version} was not served: {tags[FAILED_TAG]}")
        if time.monotonic() > deadline:
            raise ServingError(
                f"{name} version {version} not served within {timeout_s:.0f}s (is `thinkflow serve-sync` running "
                "and watching this alias?)"
            )
        time.sleep(poll_s)
