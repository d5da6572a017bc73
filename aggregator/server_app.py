"""The FedTAR Flower ServerApp.

`flwr run .` reads `[tool.flwr.app.config]` from pyproject.toml into
context.run_config: dotted keys are FedTAR config keys (``federation.rounds``,
``train.lr``...), and ``base-dir``, ``out-dir``, ``data-root`` (simulation),
``resume`` are the run's paths. `fedtar simulate` submits this app with its values as the run
config (aggregator.local_simulation); make_server_app binds values to a ServerApp of one's own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from aggregator.flower_app import NOT_SET, PATH_KEYS
from aggregator.server_loop import FederationResult, RunPaths, run_federation
from fedtar.config import FedTARConfig, load_config
from fedtar.generator.model import base_architecture
from fedtar.operations.console_logging import VERBOSE_ENV, configure_console_logging


def settings(values: Mapping[str, Any]) -> tuple[FedTARConfig, RunPaths]:
    if not values.get("base-dir"):
        raise ValueError("run config needs base-dir (a `fedtar pretrain` output or a saved base model)")
    # The installed app declares every config key as "" (not set): those leave the file's value or the default.
    overrides = {k: v for k, v in values.items() if k not in PATH_KEYS and v != NOT_SET}
    # The base decides the architecture: a run config only names the base (keys given
    # explicitly still win, and adapt_model reports a clash).
    overrides = {**base_architecture(str(values["base-dir"])), **overrides}
    cfg = load_config(values.get("config") or None, overrides)
    paths = RunPaths(base_dir=str(values["base-dir"]), out_dir=str(values.get("out-dir") or "runs/federation"),
                     data_root=str(values["data-root"]) if values.get("data-root") else None,
                     data_sites=str(values.get("data-sites", "")), resume=_flag(values.get("resume", False)),
                     overwrite=_flag(values.get("overwrite", False)),
                     resume_override=str(values.get("resume-override", "")))
    return cfg, paths


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def run_from_values(grid: Grid, values: Mapping[str, Any]) -> FederationResult:
    cfg, paths = settings(values)
    return run_federation(grid, cfg, paths)


def make_server_app(values: Mapping[str, Any]) -> ServerApp:
    """A ServerApp whose run config is `values` over whatever the engine passes."""
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        run_from_values(grid, {**dict(context.run_config), **dict(values)})

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    if not logging.getLogger().handlers:  # a process Flower started (simulation runtime, SuperLink): our console
        configure_console_logging(os.environ.get(VERBOSE_ENV) == "1")
    run_from_values(grid, dict(context.run_config))
