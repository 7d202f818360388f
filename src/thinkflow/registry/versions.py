"""Reading and writing model versions through MLflow's client: look-ups, the content-hash search, the listing.

MLflow is imported inside the functions, and only its client (``mlflow.tracking``), so that ``thinkflow models
list`` and ``promote`` do not pay for the whole ``mlflow`` package at start-up (``bench/cli_startup.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from thinkflow.registry.gate import CHALLENGER, CHAMPION
from thinkflow.registry.lineage import CONTENT_HASH_TAG, RegistryError


def client() -> Any:
    """An ``MlflowClient`` for ``MLFLOW_TRACKING_URI`` (the tracking store is also the registry)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def resolve_version(model_uri: str, mlflow_client: Any | None = None) -> Any:
    """The ModelVersion of ``models:/NAME@alias`` or ``models:/NAME/VERSION``."""
    mlflow_client = mlflow_client or client()
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return mlflow_client.get_model_version_by_alias(name, alias)
    name, _, version = ref.rpartition("/")
    if not name or not version:
        raise RegistryError(f"expected models:/NAME@alias or models:/NAME/VERSION, got {model_uri!r}")
    return mlflow_client.get_model_version(name, version)


def alias_of(aliases: list[str]) -> str:
    """The alias a version is known by: ``champion`` before ``challenger`` before any other ("" when none)."""
    for alias in (CHAMPION, CHALLENGER):
        if alias in aliases:
            return alias
    return ",".join(sorted(aliases))


def find_version(name: str, digest: str, mlflow_client: Any | None = None) -> Any | None:
    """The oldest version of ``name`` whose content hash is ``digest``, or None."""
    mlflow_client = mlflow_client or client()
    found = search_versions(mlflow_client, f"name = '{_quote(name)}' and tags.`{CONTENT_HASH_TAG}` = '{digest}'")
    found = [v for v in found if v.tags.get(CONTENT_HASH_TAG) == digest]
    return min(found, key=lambda v: int(v.version)) if found else None


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def search_versions(mlflow_client: Any, filter_string: str) -> list[Any]:
    """Every version matching ``filter_string`` (all pages)."""
    out: list[Any] = []
    token = None
    while True:
        page = mlflow_client.search_model_versions(filter_string, max_results=200, page_token=token)
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return out


def ensure_registered_model(mlflow_client: Any, name: str, description: str | None = None) -> None:
    """Create the registered model ``name`` unless it exists (safe when two registrations race)."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
        return
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        mlflow_client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def list_versions(name: str) -> list[dict[str, Any]]:
    """Every version of ``name``: version, aliases, created time, status, gate decision and its metric values."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        model = mlflow_client.get_registered_model(name)
    except MlflowException as exc:
        raise RegistryError(f"no registered model named {name!r} ({exc.error_code})") from None
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in sorted(search_versions(mlflow_client, f"name = '{_quote(name)}'"), key=lambda v: int(v.version)):
        tags = mv.tags or {}
        # eval.<metric> tags: the gate's metric (and older versions' per-benchmark scores), not eval.base.*
        metrics = {
            k.removeprefix("eval."): float(v)
            for k, v in tags.items()
            if k.startswith("eval.") and not k.startswith("eval.base.") and k != "eval.set_hash" and _is_number(v)
        }
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
                "status": mv.status,
                "content_hash": tags.get(CONTENT_HASH_TAG, ""),
                "gate": tags.get("gate.decision", ""),
                "metrics": metrics,
                "source": tags.get("thinkflow.source", mv.source),
                "run_id": mv.run_id,
            }
        )
    return rows


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
