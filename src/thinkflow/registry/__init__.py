"""The MLflow model registry: `register(cfg)` (log + version + lineage tags + gate), `promote`, `list_versions`."""

from thinkflow.registry.gate import GateConfig, GateDecision, gate, promote
from thinkflow.registry.mlflow import RegisterConfig, RegistryError, list_versions, register

__all__ = [
    "GateConfig",
    "GateDecision",
    "RegisterConfig",
    "RegistryError",
    "gate",
    "list_versions",
    "promote",
    "register",
]
