"""FedTAR: temporally-aware federated adaptation for longitudinal report generation.

The Python API lives in `fedtar.api` (`from fedtar import api`); its names are also reachable as
`fedtar.<name>` (`fedtar.simulate`, `fedtar.FedTAR`...; `config` only as `api.config`: `fedtar.config`
is a module), imported on first use so that `import fedtar` stays light.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

# fedtar.api.__all__ less the names of submodules (`fedtar.config` is a module: call it as `api.config`);
# tests/test_api.py checks this list. Listed here so that
# looking up any other name (a submodule during `from fedtar import site`) never imports the API.
API_NAMES = frozenset({
    "synthesize", "pretrain", "simulate", "load", "evaluate",
    "FedTARConfig", "SyntheticConfig", "SimulationPlan", "Variant", "RunSummary", "Evaluation",
    "comparison_table", "per_visit_table", "per_site_table",
    "FedTAR", "FederatedStrategy", "STRATEGIES", "make_strategy", "client_app", "server_app",
    "make_server_app", "run_federation", "RunPaths", "FederationResult", "InProcessGrid",
})


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        return getattr(importlib.import_module("fedtar.api"), name)
    raise AttributeError(f"module 'fedtar' has no attribute {name!r}")
