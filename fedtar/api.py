"""FedTAR from Python: the library functions the `fedtar` commands call, under short names.

Nothing here is new logic: each function is a thin wrapper over the function the CLI calls
(`fedtar/cli.py` parses arguments and calls the same ones), so a notebook or another program gets
the same results as the command line. The FedTAR strategy, the ClientApp and the ServerApp are
re-exported for someone else's Flower app.

    from fedtar import api

    cfg = api.config(overrides={"federation.rounds": 1})
    summaries = api.simulate("runs/simulate", cfg)
    print(api.comparison_table(summaries))

The documentation's "Python API" page (docs/reference/api.md) has runnable examples; the test
suite runs them (tests/test_api.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aggregator.checkpoint import load_trained
from aggregator.inprocess_grid import InProcessGrid
from aggregator.server_app import app as server_app
from aggregator.server_app import make_server_app
from aggregator.server_loop import FederationResult, RunPaths, make_strategy, run_federation
from aggregator.simulation import (
    RunSummary,
    SimulationPlan,
    Variant,
    comparison_table,
    per_site_table,
    per_visit_table,
    run_simulations,
)
from aggregator.strategies import STRATEGIES, FederatedStrategy, FedTAR
from clients.client_app import app as client_app
from data_adapters.records import find_manifests
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import SYNTHETIC_PRESET, FedTARConfig, apply_overrides, load_config
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import ReportGenerator
from fedtar.learning.pretrain import pretrain_base
from fedtar.scoring.evaluation import Evaluation, evaluate_manifests
from fedtar.scoring.metrics.clinical import Labeler, rule_labels

__all__ = [
    # build a config, data, a base; run; score
    "config", "synthesize", "pretrain", "simulate", "load", "evaluate",
    # the types they take and return
    "FedTARConfig", "SyntheticConfig", "SimulationPlan", "Variant", "RunSummary", "Evaluation",
    "comparison_table", "per_visit_table", "per_site_table",
    # for your own Flower app
    "FedTAR", "FederatedStrategy", "STRATEGIES", "make_strategy", "client_app", "server_app",
    "make_server_app", "run_federation", "RunPaths", "FederationResult", "InProcessGrid",
]


def config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
           synthetic: bool = True, preset: str | None = None) -> FedTARConfig:
    """A validated FedTAR config, as the commands build it (`fedtar.config.load_config`).

    Defaults, then (with `synthetic`, as `fedtar demo`, `simulate` and `pretrain` do) the synthetic
    preset (`train.lr` 1e-4, `policy.meta_lr` 1e-2), then a named preset (`preset="paper"`, or the
    file's `preset = "..."`), then the TOML file at `path`, then `overrides`: dotted keys as in
    `--set` (``{"train.lr": 3e-4, "client.visit_start": "global"}``). Every value is checked; an error
    names the key, the value and what is allowed (docs: Reference, Configuration).
    """
    return load_config(path, overrides, SYNTHETIC_PRESET if synthetic else None, named=preset)


def synthesize(out: str | Path, synth: SyntheticConfig | None = None, **fields: Any) -> list[Path]:
    """Write the synthetic longitudinal federation under `out` (`fedtar synth`); returns the
    manifests (one per site). Pass a `SyntheticConfig` or its fields, e.g.
    ``synthesize("runs/fed", sites=3, patients=8, visits=3, image_size=32)``; the FTA conditions are
    fields too (`timeline_spread`, `drift_events`, `demographic_signal`, `split="prospective"`).
    The same seed writes the same bytes."""
    if synth is not None and fields:
        raise TypeError("pass a SyntheticConfig or its fields, not both")
    return generate_federation(out, synth if synth is not None else SyntheticConfig(**fields))


def pretrain(out: str | Path, cfg: FedTARConfig, *, epochs: int | None = None, data: str | Path | None = None,
             pool: SyntheticConfig | None = None, lr: float = 1e-3) -> Path:
    """Make the base in `out` (`fedtar pretrain`, `fedtar.learning.pretrain.pretrain_base`); returns its folder.

    Trained on the synthetic public pool (`pool`, default `fedtar.learning.pretrain.public_pool_config`),
    or on a prepared folder's train split with `data`, or assembled from pretrained backbones when
    `model.decoder` names one. Cached: a folder whose request matches is reused as it is.
    `epochs=None`: `fedtar.learning.pretrain.DEFAULT_PRETRAIN_EPOCHS`."""
    return pretrain_base(out, cfg, epochs=epochs, lr=lr, pool=pool, data=data)


def simulate(out: str | Path, cfg: FedTARConfig, *, strategies: Sequence[str] = ("fedtar", "fedavg"),
             seeds: Iterable[int] = (0,), rounds: int | None = None, base: str | Path | None = None,
             data: str | None = None, synth: SyntheticConfig | None = None, engine: str = "ray",
             holdout_site: int | None = None, variants: Sequence[Variant] = (),
             pretrain_epochs: int | None = None, resume: bool = False, resume_override: str = "",
             overwrite: bool = False) -> list[RunSummary]:
    """A whole local federation per strategy and seed (`fedtar simulate`,
    `aggregator.simulation.run_simulations`); returns one `RunSummary` per run (status, metrics,
    history, run folder under ``out/runs``).

    `base`: a base folder (default: pretrained into ``out/base``, cached). `data`: prepared
    manifests (a folder or a comma list) instead of the synthetic federation written under
    ``out/federation`` from `synth`. `engine`: ``ray`` (Flower's simulation engine) or ``inprocess``
    (the same ServerApp and ClientApp, one site after another). `rounds` overrides
    `federation.rounds`; `variants` adds named settings (ablations) after the strategies.
    Unlike the command, no lock or stamp is put on `out` (`fedtar.operations.output_folder`)."""
    if rounds is not None:
        cfg = apply_overrides(cfg, {"federation.rounds": rounds})  # as `fedtar simulate --rounds`
    plan = SimulationPlan(strategies=list(strategies), variants=list(variants), seeds=list(seeds),
                          holdout_site=holdout_site, engine=engine, resume=resume, resume_override=resume_override,
                          pretrain_epochs=pretrain_epochs)
    return run_simulations(out, cfg, plan, synth if synth is not None else SyntheticConfig(), base_dir=base,
                           data=data, overwrite=overwrite)


def load(model: str | Path) -> tuple[ReportGenerator, ReportTokenizer]:
    """A trained model and its tokenizer: a saved model folder (`fedtar demo`'s ``OUT/model``, a base)
    or a finished run's folder (a `RunSummary.out_dir`), as `fedtar evaluate --model` reads it."""
    return load_trained(model)


def evaluate(model: str | Path, data: str | Path, *, split: str = "test", beams: int = 1, meteor: bool = False,
             labeler: Labeler = rule_labels) -> Evaluation:
    """Generate and score reports for one split (`fedtar evaluate`,
    `fedtar.scoring.evaluation.evaluate_manifests`). `model`: as for `load`; `data`: a federation folder or
    a comma list of manifests. Returns the overall, per-visit and per-year metrics and the
    generated and reference reports. `meteor=True` needs Java (the command's default)."""
    trained, tokenizer = load_trained(model)
    evaluation, _ = evaluate_manifests(trained, tokenizer, find_manifests(str(data)), split, beams, meteor, labeler)
    return evaluation
