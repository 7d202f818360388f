"""The MLflow model registry: `register(cfg)` (log + version + lineage tags + gate), `promote`, `list_versions`.

The promotion gate itself is the module `thinkflow.registry.gate` (``gate.gate(name, version, cfg)``).
"""

from thinkflow.registry.gate import GateConfig, GateDecision, GateError, promote
from thinkflow.registry.mlflow import RegisterConfig, RegistryError, list_versions, register

__all__ = [
    "GateConfig",
    "GateDecision",
    "GateError",
    "RegisterConfig",
    "RegistryError",
    "list_versions",
    "promote",
    "register",
]
