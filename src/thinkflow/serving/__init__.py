"""Serving the registry's champion: resolve an alias and stage its weights (`serve_init`), roll Deployments when
an alias moves, smoke-test and record (`thinkflow.serving.sync`), and the smoke request itself."""

from thinkflow.serving.resolve import ServeInitConfig, ServingError, serve_init
from thinkflow.serving.smoke import SmokeResult, smoke_request
from thinkflow.serving.sync import ServingFailed, SyncConfig, decide, sync_once, wait_serving

__all__ = [
    "ServeInitConfig",
    "ServingError",
    "ServingFailed",
    "SmokeResult",
    "SyncConfig",
    "decide",
    "serve_init",
    "smoke_request",
    "sync_once",
    "wait_serving",
]
