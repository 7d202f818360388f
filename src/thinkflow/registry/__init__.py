"""The MLflow model registry: `register(cfg)` (log + version + description + gate), `promote`, `list_versions`.

Modules: `stage` (the register stage), `lineage` (model files, content hash, lineage.json), `flavor` (logging
with MLflow's transformers flavor), `describe` (the version's tags and Markdown description), `versions`
(MLflow client look-ups and the listing), `gate` (the promotion gate).
"""

from thinkflow.registry.gate import GateConfig, GateDecision, GateError, promote
from thinkflow.registry.lineage import RegistryError
from thinkflow.registry.stage import RegisterConfig, RegisterResult, Registration, register
from thinkflow.registry.versions import list_versions

__all__ = [
    "GateConfig",
    "GateDecision",
    "GateError",
    "RegisterConfig",
    "RegisterResult",
    "Registration",
    "RegistryError",
    "list_versions",
    "promote",
    "register",
]
