"""The Kubernetes API client ThinkFlow's launchers and serve-sync use: in-cluster credentials, else a kubeconfig."""

from __future__ import annotations

import os
from typing import Any

from thinkflow.errors import ThinkFlowError


class KubeConfigError(ThinkFlowError, RuntimeError):
    """No Kubernetes credentials: neither a service account nor a readable kubeconfig."""


def kube_api_client() -> Any:
    """An API client from the in-cluster service account, else from ``KUBECONFIG`` / ``~/.kube/config``."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        # KUBECONFIG read now (the kubernetes package reads it once, at import)
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        try:
            config.load_kube_config(config_file=path, client_configuration=configuration)
        except (config.ConfigException, OSError) as exc:
            raise KubeConfigError(f"no Kubernetes credentials (in-cluster or kubeconfig {path}): {exc}") from None
    return client.ApiClient(configuration)
