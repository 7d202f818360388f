"""Submit a pipeline to a KFP server: upload a version, then start a run or a recurring run.

`submit` compiles the pipeline (the same bytes as the committed ``pipelines/*.yaml`` with default
options), uploads it as a pipeline version named after its content hash (an identical package is not
uploaded twice), gets or creates the experiment, and creates a run (or a recurring run on a cron
schedule) through `kfp.Client`, returning the run's UI link.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from thinkflow.errors import ThinkFlowError, UsageError, did_you_mean
from thinkflow.pipelines.common import CLUSTER_PRESETS, PipelineOptions, check_overrides
from thinkflow.pipelines.registry import DISPLAY_NAMES, check_name


class SubmitError(ThinkFlowError, ValueError):
    """Bad submit arguments (parameters file, parameter names, cron expression)."""


class ParamsError(UsageError, SubmitError):
    """Pipeline parameters that do not fit the pipeline (a usage error: exit code 2)."""


class SubmitResult(BaseModel):
    """What was created on the KFP server."""

    pipeline: str
    pipeline_id: str
    version_id: str
    version_name: str
    experiment_id: str
    run_id: str | None = None
    recurring_run_id: str | None = None
    url: str


# Pipeline arguments are a few names and values; a bigger file is a mistake (or an attack), not parameters.
MAX_PARAMS_BYTES = 1024 * 1024


def read_params(path: str | Path) -> dict[str, Any]:
    """Pipeline arguments from a YAML or JSON file holding one mapping (``name: value``)."""
    file = Path(path)
    if not file.is_file():
        raise ParamsError(f"parameters file not found: {file}")
    size = file.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise ParamsError(f"{file}: {size:,} bytes is over the limit of {MAX_PARAMS_BYTES:,} for a parameters file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{file}: invalid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{file}: expected a mapping of pipeline parameter names to values")
    return data


def pipeline_inputs(package: str | Path) -> dict[str, dict[str, Any]]:
    """The pipeline's parameters (name -> ``parameterType``, ``defaultValue``) read from a package."""
    spec = next(yaml.safe_load_all(Path(package).read_text(encoding="utf-8")))
    return dict(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


def check_params(package: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Every argument names a parameter of the pipeline and has its type (errors name the parameter).

    Returns the arguments to send: a number given for a STRING parameter (``eval_gpus: 2`` in a YAML file)
    becomes its string, because KFP's driver reads pod-spec placeholders (GPU count, CPU, memory) with
    ``GetStringValue()`` (backend/src/v2/driver/resolve.go, ``resolvePodSpecInputRuntimeParameter``), so
    those parameters are strings."""
    inputs = pipeline_inputs(package)
    out = dict(params)
    for key, value in params.items():
        if key not in inputs:
            hint = did_you_mean(key, inputs)
            raise ParamsError(f"unknown pipeline parameter {key!r}{hint}; known: {', '.join(sorted(inputs))}")
        kind = inputs[key].get("parameterType", "")
        if kind == "STRING" and isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value = str(value)
        allowed = _TYPES.get(kind)
        ok = allowed is None or (isinstance(value, allowed) and not (kind != "BOOLEAN" and isinstance(value, bool)))
        if not ok:
            raise ParamsError(f"pipeline parameter {key!r} expects {kind}, got {type(value).__name__} {value!r}")
    return out


def normalize_cron(cron: str) -> str:
    """KFP's scheduler takes 6-field cron (seconds first); a 5-field expression gets ``0`` seconds."""
    fields = cron.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise SubmitError(f"--recurring expects a cron expression of 5 or 6 fields, got {cron!r}")


def version_name(display_name: str, package: str | Path) -> str:
    """``<pipeline>-<first 12 hex of the package's sha256>``: the same package maps to the same version."""
    digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()[:12]
    return f"{display_name}-{digest}"


def _version_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def upload(
    client: Any, display_name: str, package: str | Path, description: str, namespace: str | None
) -> tuple[str, str, str]:
    """Upload ``package`` as a version of pipeline ``display_name`` (the pipeline is created if missing);
    a version with the same content (same name) is reused. Returns (pipeline_id, version_id, version_name)."""
    vname = version_name(display_name, package)
    pipeline_id = client.get_pipeline_id(display_name)
    if pipeline_id is None:
        # KFP creates the pipeline with a first version named after it; ours is added next to it by content.
        pipeline_id = client.upload_pipeline(
            str(package), pipeline_name=display_name, description=description, namespace=namespace
        ).pipeline_id
    else:
        found = client.list_pipeline_versions(pipeline_id, filter=_version_filter(vname)).pipeline_versions or []
        if found:
            return pipeline_id, found[0].pipeline_version_id, vname
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=vname, pipeline_id=pipeline_id, description=description
    )
    return pipeline_id, version.pipeline_version_id, vname


def check_host(host: str | None, timeout: float = 5.0) -> None:
    """Fail fast unless the KFP API at ``host`` accepts a connection (before compiling or uploading anything)."""
    import socket
    from urllib.parse import urlparse

    if not host:
        return  # kfp.Client finds the in-cluster endpoint itself
    parsed = urlparse(host if "://" in host else f"http://{host}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SubmitError(f"--host {host!r}: expected a URL such as http://localhost:8080")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise SubmitError(
            f"--host {host}: KFP does not answer at {parsed.hostname}:{port} ({exc.strerror or type(exc).__name__}); "
            "check the URL, or forward the UI: kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80"
        ) from None


def submit(
    host: str | None,
    pipeline: str = "vlaa_thinker",
    params: dict[str, Any] | None = None,
    *,
    experiment: str = "thinkflow",
    recurring: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    enable_caching: bool | None = None,
    service_account: str | None = None,
    options: PipelineOptions | None = None,
    client: Any = None,
) -> SubmitResult:
    """Upload ``pipeline`` and start a run (or, with ``recurring`` cron, a recurring run) on ``host``.

    ``params`` are pipeline arguments (checked against the pipeline's parameters before anything is sent);
    ``enable_caching`` overrides the compiled caching policy for every task; ``client`` is a ready
    `kfp.Client` (default: ``kfp.Client(host=host, namespace=...)``).
    """
    from thinkflow.pipelines.compile import compile_pipeline
    from thinkflow.pipelines.registry import build

    key = check_name(pipeline)
    display = DISPLAY_NAMES[key]
    params = dict(params or {})
    cron = normalize_cron(recurring) if recurring else None
    if client is None:
        import kfp

        check_host(host)

        client = kfp.Client(host=host, namespace=namespace) if namespace else kfp.Client(host=host)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(key, Path(tmp) / f"{key}.yaml", options)
        params = check_params(package, params)
        check_overrides(params, {f"{stage}_preset": name for stage, name in CLUSTER_PRESETS.items()})
        description = build(key, options).description or display
        pipeline_id, version_id, vname = upload(client, display, package, description, namespace)
    exp = client.create_experiment(experiment, namespace=namespace)
    name = run_name or f"{display}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    prefix = host.rstrip("/") if host else client._get_url_prefix()
    common = dict(
        experiment_id=exp.experiment_id,
        job_name=name,
        params=params,
        pipeline_id=pipeline_id,
        version_id=version_id,
        enable_caching=enable_caching,
        service_account=service_account,
    )
    ids = {"pipeline": key, "pipeline_id": pipeline_id, "version_id": version_id, "version_name": vname}
    if cron:
        rec = client.create_recurring_run(cron_expression=cron, max_concurrency=1, no_catchup=True, **common)
        url = f"{prefix}/#/recurringrun/details/{rec.recurring_run_id}"
        return SubmitResult(**ids, experiment_id=exp.experiment_id, recurring_run_id=rec.recurring_run_id, url=url)
    run = client.run_pipeline(**common)
    url = f"{prefix}/#/runs/details/{run.run_id}"
    return SubmitResult(**ids, experiment_id=exp.experiment_id, run_id=run.run_id, url=url)
