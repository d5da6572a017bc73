"""A whole local federation in one call: `fedtar simulate`.

Writes (or reuses) the synthetic federation and the pretrained base, then
runs each strategy for each seed through Flower's simulation runtime (`flwr run`
on a local SuperLink: aggregator.local_simulation; Ray, one virtual SuperNode per
site) and collects the server's results. The
centralized upper reference trains the same model on all sites' training
patients pooled, for the same number of passes over the data.

Engines: ``ray`` (Flower's simulation runtime, the default) or
``inprocess`` (the same ServerApp and ClientApp without Ray, one site after
another: for debugging and tests).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aggregator.checkpoint import FINAL_STATE_FILE, RESULTS_FILE, open_run
from aggregator.inprocess_grid import InProcessGrid
from aggregator.local_simulation import LocalSimulation
from aggregator.server_app import run_from_values
from clients.client_app import app as client_app
from clients.site_runtime import evaluate_site, site_runtime
from data_adapters.records import find_manifests
from data_adapters.synthetic import SyntheticConfig, ensure_federation
from fedtar.config import FedTARConfig, apply_overrides, validate_config
from fedtar.data.site import load_site
from fedtar.demo import train_central
from fedtar.generator.model import adapt_model, load_model
from fedtar.learning.pretrain import pretrain_base
from fedtar.operations.output_folder import safe_child
from fedtar.operations.tables import format_table
from fedtar.scoring.evaluation import REPORT_COLUMNS, evaluate_model, flat_metrics

log = logging.getLogger(__name__)


@dataclass
class Variant:
    """A named run setting: a strategy plus config overrides (an ablation), e.g.
    Variant("fedtar-uniform", "fedtar", {"policy.kind": "uniform"})."""

    name: str
    strategy: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimulationPlan:
    strategies: list[str] = field(default_factory=lambda: ["fedtar", "fedavg"])
    variants: list[Variant] = field(default_factory=list)  # further named settings after the strategies
    seeds: list[int] = field(default_factory=lambda: [0])
    holdout_site: int | None = None   # train on the other sites, evaluate on this one
    engine: str = "ray"               # ray | inprocess
    resume: bool = False              # continue each run from its last checkpoint
    resume_override: str = ""         # config keys a resume may change (fedtar.trust.run_pins)
    skip_done: bool = False           # reuse runs whose results.json says completed (resumable sweeps)
    pretrain_epochs: int | None = None  # None: fedtar.learning.pretrain.DEFAULT_PRETRAIN_EPOCHS

    def all_variants(self) -> list[Variant]:
        return [Variant(s, s) for s in self.strategies] + list(self.variants)


@dataclass
class RunSummary:
    strategy: str
    seed: int
    status: str
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    out_dir: Path
    select_metrics: dict[str, float] = field(default_factory=dict)  # on federation.select_split, if set


class _Engine:
    """Runs one federation run on the plan's engine. The simulation runtime's SuperLink is started on the
    first run that needs it and serves every later run of the same call; `close` stops it."""

    def __init__(self, engine: str, folder: Path):
        if engine not in ("ray", "inprocess"):
            raise ValueError(f"unknown engine {engine!r} (ray or inprocess)")
        self.engine, self.folder = engine, folder
        self._stack = contextlib.ExitStack()
        self._link: LocalSimulation | None = None

    def run(self, values: dict[str, Any], num_sites: int) -> None:
        if self.engine == "inprocess":
            grid = InProcessGrid([client_app] * num_sites,
                                 [{"partition-id": i, "num-partitions": num_sites} for i in range(num_sites)])
            run_from_values(grid, values)
            return
        if self._link is None:
            if not torch.cuda.is_available():
                # Ray warns (FutureWarning) that it will stop hiding GPUs from actors given num_gpus=0;
                # without a GPU there is nothing to hide, so opting into that behaviour changes nothing. On
                # a GPU machine Ray's current behaviour (clients on the CPU) and its warning are kept.
                os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
            verbose = logging.getLogger().getEffectiveLevel() <= logging.DEBUG  # `fedtar -v`
            self._link = self._stack.enter_context(LocalSimulation(self.folder, verbose=verbose))
        self._link.run(values, num_sites)

    def close(self) -> None:
        self._stack.close()


def _centralized(cfg: FedTARConfig, base_dir: Path, manifests: list[Path], test_manifests: list[Path]
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """The pooled reference's metrics on federation.eval_split (and on select_split, if set)."""
    base, tokenizer = load_model(base_dir)
    torch.manual_seed(cfg.train.seed)
    model = adapt_model(base, cfg)
    sites = [load_site(m, tokenizer, cfg) for m in manifests]
    # Same budget as a federated run: rounds x local passes over every training exam.
    train_central(model, sites, cfg, cfg.federation.rounds * cfg.client.local_epochs)
    tests = [load_site(m, tokenizer, cfg) for m in test_manifests] if test_manifests != manifests else sites
    def score(split: str) -> dict[str, float]:
        return flat_metrics(evaluate_model(model, [s.split(split) for s in tests], tokenizer,
                                           num_beams=cfg.client.eval_beams, with_meteor=cfg.client.eval_meteor))

    fed = cfg.federation
    main = score(fed.eval_split)
    return main, (main if fed.select_split == fed.eval_split else score(fed.select_split) if fed.select_split else {})


def run_simulations(out: str | Path, cfg: FedTARConfig, plan: SimulationPlan,
                    synth: SyntheticConfig = SyntheticConfig(), base_dir: str | Path | None = None,
                    data: str | None = None, pool: SyntheticConfig | None = None,
                    overwrite: bool = False) -> list[RunSummary]:
    """`data`: prepared manifests (a federation folder or a comma list of manifest files) to use
    instead of the synthetic federation written under OUT/federation. `pool`: the synthetic public
    pool the base is pretrained on when no base is given (default: fedtar.learning.pretrain's). A run folder
    holding an earlier run is refused unless resuming or `overwrite` (sweeps redo unfinished runs)."""
    out = Path(out)
    if data:
        data_root, manifests = data, find_manifests(data)
    else:
        data_root = str(out / "federation")
        manifests = ensure_federation(data_root, synth)
    validate_config(cfg, num_sites=len(manifests))  # before the base is trained
    sites = list(range(len(manifests)))
    min_sites = cfg.federation.min_sites
    if plan.holdout_site is not None:
        if plan.holdout_site not in sites:
            raise ValueError(f"--holdout-site {plan.holdout_site}: the federation has sites 0..{len(sites) - 1}")
        sites.remove(plan.holdout_site)
        if min_sites > len(sites):  # leaving one site out may leave fewer than min_sites: said, not silent
            log.warning("federation.min_sites=%d lowered to %d for the runs holding out site %d",
                        min_sites, len(sites), plan.holdout_site)
            min_sites = len(sites)
    # A given base is used as it is; otherwise the cached public-pool base (trained if missing).
    base_dir = Path(base_dir) if base_dir else pretrain_base(out / "base", cfg, epochs=plan.pretrain_epochs,
                                                             pool=pool)
    summaries = []
    runs = [(v, seed) for v in plan.all_variants() for seed in plan.seeds]
    engine = _Engine(plan.engine, out / "flower")
    try:
        for i, (variant, seed) in enumerate(runs, start=1):
            strategy = variant.strategy
            run_cfg = apply_overrides(cfg, {**variant.overrides, "train.seed": seed, "federation.strategy": strategy,
                                            "federation.min_sites": min_sites})
            run_dir = run_folder(out, variant.name, seed, plan.holdout_site)
            if plan.skip_done and (done := finished_run(out, variant, seed, plan.holdout_site)) is not None:
                log.info("[%d/%d] %s seed %d: done before, reusing %s", i, len(runs), variant.name, seed, run_dir)
                summaries.append(done)
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            log.info("[%d/%d] simulating %s, seed %d, %d sites -> %s", i, len(runs), variant.name, seed, len(sites),
                     run_dir)
            train_manifests = [manifests[i] for i in sites]
            eval_manifests = [manifests[plan.holdout_site]] if plan.holdout_site is not None else train_manifests
            if strategy == "centralized":
                metrics, selected = _centralized(run_cfg, base_dir, train_manifests, eval_manifests)
                (run_dir / RESULTS_FILE).write_text(json.dumps(
                    {"status": "completed", "metrics": metrics, **({"select_metrics": selected} if selected else {})},
                    indent=2, default=float))
                summaries.append(RunSummary(variant.name, seed, "completed", metrics, [], run_dir, selected))
                continue
            # Refused or cleaned here, before the engine starts (the server checks again).
            open_run(run_dir, run_cfg, base_dir, plan.resume, overwrite or plan.skip_done, plan.resume_override)
            values = {**run_cfg.to_flat(), "base-dir": str(base_dir), "data-root": data_root,
                      "out-dir": str(run_dir), "data-sites": ",".join(map(str, sites)), "resume": plan.resume,
                      "resume-override": plan.resume_override}
            engine.run(values, len(sites))
            result = json.loads((run_dir / RESULTS_FILE).read_text())
            metrics = result.get("metrics", {})
            if plan.holdout_site is not None and result["status"] == "completed":
                metrics = _evaluate_holdout(run_cfg, base_dir, manifests[plan.holdout_site], run_dir)
                result["metrics"], result["holdout_site"] = metrics, plan.holdout_site
                (run_dir / RESULTS_FILE).write_text(json.dumps(result, indent=2, default=float))
            summaries.append(RunSummary(variant.name, seed, result["status"], metrics, result.get("history", []),
                                        run_dir, result.get("select_metrics", {})))
    finally:
        engine.close()
    return summaries


def run_folder(out: Path, name: str, seed: int, holdout: int | None = None) -> Path:
    """Where one (setting, seed[, held-out site]) run of OUT lives."""
    group = f"holdout-{holdout}" if holdout is not None else "all"
    return safe_child(Path(out) / "runs" / group, name, "setting name") / f"seed-{seed}"


def finished_run(out: Path, variant: Variant, seed: int, holdout: int | None = None,
                 final_only: bool = True) -> RunSummary | None:
    """The summary of a completed run of OUT (None: not run, or not completed). `final_only=False`
    accepts a stopped run too (an end state: another sweep part that waits for it stops waiting).
    A held-out run counts once its held-out site is scored."""
    run_dir = run_folder(out, variant.name, seed, holdout)
    done = _finished(run_dir, ("completed",) if final_only else ("completed", "stopped"))
    if done is None or (holdout is not None and done.get("status") == "completed"
                        and done.get("holdout_site") != holdout):
        return None
    return RunSummary(variant.name, seed, done["status"], done.get("metrics", {}), done.get("history", []),
                      run_dir, done.get("select_metrics", {}))


def _finished(run_dir: Path, statuses: tuple[str, ...] = ("completed",)) -> dict | None:
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError:  # being written by another process
        return None
    return result if result.get("status") in statuses else None


def _evaluate_holdout(cfg: FedTARConfig, base_dir: Path, manifest: Path, run_dir: Path) -> dict[str, float]:
    """The final global model on a site that never trained (it fits its own GMM, as any site does)."""
    state = torch.load(run_dir / FINAL_STATE_FILE, map_location="cpu")
    rt = site_runtime(cfg.to_flat(), base_dir, manifest, index=99)
    return evaluate_site(rt, state)


def comparison_table(summaries: list[RunSummary], markdown: bool = False) -> str:
    """Mean ± std over seeds per strategy."""
    rows = []
    for strategy in dict.fromkeys(s.strategy for s in summaries):
        runs = [s for s in summaries if s.strategy == strategy and s.status == "completed"]
        row: list[object] = [strategy, len(runs)]
        for col in REPORT_COLUMNS:
            values = [float(r.metrics.get(col, float("nan"))) for r in runs]
            values = [v for v in values if not math.isnan(v)]
            if not values:
                row.append("n/a")
            elif len(values) == 1:
                row.append(f"{values[0]:.3f}")
            else:
                row.append(f"{statistics.fmean(values):.3f}±{statistics.stdev(values):.3f}")
        rows.append(row)
    return format_table(["strategy", "seeds", *REPORT_COLUMNS], rows, markdown=markdown)


def per_visit_table(summaries: list[RunSummary], metric: str = "cmp_acc", markdown: bool = False,
                    group: str = "visit") -> str:
    """One metric per visit index (or per study year: group="year") and strategy (mean over seeds)."""
    prefix = f"{metric}-{group}-"
    keys = sorted({int(k[len(prefix):]) for s in summaries for k in s.metrics if k.startswith(prefix)})
    rows = []
    for strategy in dict.fromkeys(s.strategy for s in summaries):
        runs = [s for s in summaries if s.strategy == strategy and s.status == "completed"]
        row: list[object] = [strategy]
        for t in keys:
            values = [float(r.metrics[f"{prefix}{t}"]) for r in runs if f"{prefix}{t}" in r.metrics]
            values = [v for v in values if not math.isnan(v)]
            row.append(statistics.fmean(values) if values else float("nan"))
        rows.append(row)
    label = "t=" if group == "visit" else ""
    return format_table(["strategy", *(f"{label}{t}" for t in keys)], rows, markdown=markdown)


def per_site_table(summaries: list[RunSummary], metrics: tuple[str, ...] = ("bleu4", "cider", "ce_f1", "cmp_acc")
                   ) -> str:
    """Each site's metrics for each strategy's first seed (from the server's results file; sites by the
    names their data gives them, e.g. site1, or by Flower node id where the server cannot know it)."""
    rows = []
    for s in summaries:
        if s.seed != summaries[0].seed or s.status != "completed":
            continue
        results = json.loads((s.out_dir / RESULTS_FILE).read_text())
        for site, m in sorted(results.get("site_metrics", {}).items()):
            rows.append([s.strategy, site, int(m.get("num-examples", 0)), *(m.get(k, float("nan")) for k in metrics)])
    return format_table(["strategy", "site", "exams", *metrics], rows)
