"""Preflight: check, in seconds and before any work starts, that what a run needs is there.

Teacher endpoints answer ``GET <base_url>/models`` (and serve the configured model when they list theirs), the
reward model answers ``GET /health`` next to its scoring URL and accepts its token, every data source exists, the
buckets exist, and the credentials are accepted (the teachers' API keys, the S3 keys). All checks run at once;
every problem found is named in ONE error, so a pipeline fails at its first task with the whole list instead of
hours later with the first item.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any
from urllib.parse import urljoin

from pydantic import Field

from thinkflow import env
from thinkflow.config import StageConfig, load_config
from thinkflow.data.teachers import TeacherConfig
from thinkflow.errors import ThinkFlowError


class PreflightError(ThinkFlowError, RuntimeError):
    """One or more things a run needs are missing; the message names them all."""


class PreflightConfig(StageConfig):
    """What to check. Empty: nothing (every check is opt-in)."""

    teachers: dict[str, TeacherConfig] = Field(
        default_factory=dict, description="OpenAI-compatible endpoints that must answer, by name."
    )
    build: str | dict[str, Any] | None = Field(
        default=None,
        description="A build config whose teachers, source files and image roots are checked too: a preset name "
        "or YAML file, or the config's keys (a pipeline's data preset with its overrides merged in).",
    )
    reward: bool = Field(
        default=False,
        description=f"Check the reward model: `reward_url`, else ${env.REWARD_URL} (set by the chart).",
    )
    reward_url: str | None = Field(
        default=None, description="Reward model scoring URL, e.g. http://reward:8000/score (its /health must answer)."
    )
    sources: list[str] = Field(
        default_factory=list, description="Files or prefixes (local or s3://) that must exist and be non-empty."
    )
    buckets: list[str] = Field(
        default_factory=list, description="s3:// URIs whose bucket must exist (the S3 credentials are checked too)."
    )
    timeout: float = Field(default=5.0, gt=0, description="Seconds each check may take.")


def _teacher(name: str, t: TeacherConfig, timeout: float) -> str | None:
    import httpx

    try:
        url = t.url()
    except ValueError as exc:
        return f"teacher {name}: {exc}"
    key = os.environ.get(t.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.get(f"{url.rstrip('/')}/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"teacher {name}: {url} does not answer ({type(exc).__name__}: {exc})"
    if resp.status_code in (401, 403):
        return f"teacher {name}: {url} refused the API key in ${t.api_key_env} (HTTP {resp.status_code})"
    if resp.status_code >= 400:
        return f"teacher {name}: GET {url}/models answered HTTP {resp.status_code}"
    try:
        served = {m.get("id") for m in resp.json().get("data", []) if isinstance(m, dict)}
    except (ValueError, AttributeError):
        served = set()
    if served and t.model not in served:
        return f"teacher {name}: {url} serves {sorted(map(str, served))}, not model {t.model!r}"
    return None


def _reward(url: str | None, timeout: float) -> str | None:
    import httpx

    url = url or os.environ.get(env.REWARD_URL)
    if not url:
        return f"reward model: no reward_url and ${env.REWARD_URL} is unset (the chart's rewardModel sets it)"
    key = os.environ.get(env.REWARD_API_KEY)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    health = urljoin(url, "health")  # the scoring URL is <base>/score; /health is its sibling
    try:
        resp = httpx.get(health, timeout=timeout)
        if resp.status_code >= 400:
            return f"reward model: GET {health} answered HTTP {resp.status_code}"
        # /health is open; an empty scoring request is refused before it is read when the token is wrong
        resp = httpx.post(url, json={}, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"reward model: {url} does not answer ({type(exc).__name__}: {exc})"
    if resp.status_code in (401, 403):
        return f"reward model: {url} refused the token in ${env.REWARD_API_KEY} (HTTP {resp.status_code})"
    return None


def _source(uri: str) -> str | None:
    from thinkflow import storage

    try:
        if storage.is_remote(uri):
            storage.check_remote(uri)
        if not storage.exists(uri):
            return f"source {uri}: not found"
    except storage.StorageError as exc:
        return f"source {uri}: {str(exc).removeprefix(f'{uri}: ')}"
    return None


def _bucket(uri: str, timeout: float) -> str | None:
    from thinkflow import storage

    if not storage.is_remote(uri):
        return f"bucket {uri}: not an s3:// URI"
    try:
        storage.check_remote(uri, timeout=timeout)
    except storage.StorageError as exc:
        return f"bucket {uri}: {str(exc).removeprefix(f'{uri}: ')}"
    return None


def _from_build(cfg: PreflightConfig) -> tuple[dict[str, TeacherConfig], list[str]]:
    if cfg.build is None:
        return {}, []
    from thinkflow.data.build import BuildConfig

    build = (
        BuildConfig.model_validate(cfg.build) if isinstance(cfg.build, dict) else load_config(BuildConfig, cfg.build)
    )
    teachers = {name: t for name, t in build.teachers if t is not None}
    sources = [
        value
        for src in build.sources
        for attr in ("path", "json_file", "images")
        if isinstance(value := getattr(src, attr, None), str) and value
    ]
    return teachers, sources


def run(cfg: PreflightConfig) -> list[str]:
    """Run every configured check at once; returns what was checked, or raises `PreflightError` naming every
    problem found."""
    build_teachers, build_sources = _from_build(cfg)
    teachers = {**build_teachers, **cfg.teachers}
    checks: dict[str, Callable[[], str | None]] = {}
    for name, t in teachers.items():
        checks[f"teacher {name}"] = partial(_teacher, name, t, cfg.timeout)
    if cfg.reward or cfg.reward_url:
        checks["reward model"] = partial(_reward, cfg.reward_url, cfg.timeout)
    for uri in dict.fromkeys([*build_sources, *cfg.sources]):
        checks[f"source {uri}"] = partial(_source, uri)
    for uri in dict.fromkeys(cfg.buckets):
        checks[f"bucket {uri}"] = partial(_bucket, uri, cfg.timeout)
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(checks)), thread_name_prefix="preflight") as pool:
        futures = {what: pool.submit(check) for what, check in checks.items()}
        failed = {what: p for what, f in futures.items() if (p := f.result())}
    if failed:
        by_reason: dict[str, list[str]] = {}  # one S3 endpoint missing is said once, with every URI it hides
        for what, problem in failed.items():
            by_reason.setdefault(problem.removeprefix(f"{what}: "), []).append(what)
        problems = [f"{', '.join(whats)}: {reason}" for reason, whats in by_reason.items()]
        raise PreflightError(f"preflight: {len(failed)} of {len(checks)} checks failed: " + "; ".join(problems))
    return list(checks)
