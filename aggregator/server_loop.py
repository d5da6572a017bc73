"""The server's run: rounds with deadlines and retries, checkpoints, final evaluation.

Every wait has an end: connecting nodes (`federation.node_wait`), each
round's replies (`federation.round_timeout`), and a round with fewer than
`federation.min_sites` valid replies is retried `federation.round_retries`
times before the run stops with a clear message (the last checkpoint stays).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid

from aggregator.checkpoint import (
    FINAL_STATE_FILE,
    RECEIVED_FILE,
    RESULTS_FILE,
    RUN_FILE,
    RunStart,
    open_run,
    save_checkpoint,
    trim_received,
)
from aggregator.federated_gmm import FederatedGMMError, fit_federated_gmm
from aggregator.strategies import STRATEGIES, FederatedStrategy, Scaffold
from data_adapters.records import find_manifests
from fedtar.config import FedTARConfig
from fedtar.data.exams import concat_exams
from fedtar.data.site import load_site
from fedtar.generator.model import adapt_model, load_model
from fedtar.generator.parameters import get_travelling_state, set_travelling_state, state_from_record, travelling_specs
from fedtar.learning.training import validation_gradient
from fedtar.operations.heap import release_freed_memory
from fedtar.operations.tracking import TB_DIR, Tracker

log = logging.getLogger("fedtar.server")


@dataclass
class RunPaths:
    base_dir: str
    out_dir: str
    data_root: str | None = None   # simulation: the synthetic/prepared federation folder
    data_sites: str = ""           # simulation: comma-separated site indices the nodes map to
    resume: bool = False
    overwrite: bool = False        # a new run in a folder with an earlier run's checkpoints: remove them
    resume_override: str = ""      # config keys a resume may change (comma list; fedtar.trust.run_pins)


@dataclass
class FederationResult:
    status: str                                  # completed | stopped
    rounds_done: int
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    site_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    select_metrics: dict[str, float] = field(default_factory=dict)  # on federation.select_split, if set
    global_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


class ServerValidation:
    """meta.validation = server: a validation set the server holds (simulation: the sites' validate splits)."""

    def __init__(self, cfg: FedTARConfig, base_dir: str, data_root: str, data_sites: str = ""):
        base, tokenizer = load_model(base_dir)
        torch.manual_seed(cfg.train.seed)
        self.model = adapt_model(base, cfg)
        manifests = find_manifests(data_root)
        if data_sites:  # only the training sites: a held-out site must not steer the policy
            manifests = [manifests[int(i)] for i in data_sites.split(",")]
        sites = [load_site(m, tokenizer, cfg) for m in manifests]
        self.exams = concat_exams([s.validation(cfg.meta.recent_fraction) for s in sites])
        self.batch_size = cfg.data.batch_size

    def __call__(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        set_travelling_state(self.model, state)
        return validation_gradient(self.model, self.exams, self.batch_size)[0]


def make_strategy(cfg: FedTARConfig, specs, paths: RunPaths, num_sites: int) -> FederatedStrategy:
    name = cfg.federation.strategy
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    run_values = {"base-dir": paths.base_dir, "data-root": paths.data_root or "", "data-sites": paths.data_sites}
    if name == "fedtar":
        validation = None
        if cfg.meta.validation == "server" and cfg.policy.kind == "learned":
            if not paths.data_root:
                raise ValueError("meta.validation = server needs a server-held validation set (data root); "
                                 "in a deployment use meta.validation = federated")
            validation = ServerValidation(cfg, paths.base_dir, paths.data_root, paths.data_sites)
        return STRATEGIES[name](cfg, specs, run_values, validation_grad=validation)
    if name == "scaffold":
        return Scaffold(cfg, specs, run_values, num_sites=num_sites)
    return STRATEGIES[name](cfg, specs, run_values)


def wait_for_nodes(grid: Grid, needed: int, deadline_s: float, since: float | None = None) -> list[int]:
    """Node ids once `needed` are connected, or those connected `deadline_s` after `since` (default: now)."""
    end = (time.monotonic() if since is None else since) + deadline_s
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= needed or time.monotonic() >= end:
            return nodes
        time.sleep(1.0)


def run_federation(grid: Grid, cfg: FedTARConfig, paths: RunPaths) -> FederationResult:
    run_started = time.monotonic()  # federation.node_wait counts from here, not after the model is loaded
    fed = cfg.federation
    out = Path(paths.out_dir)
    start = open_run(out, cfg, paths.base_dir, paths.resume, paths.overwrite, paths.resume_override)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).unlink(missing_ok=True)  # an earlier attempt's results are not this run's
    _write_run_file(out, cfg, paths, start)
    base, _ = load_model(paths.base_dir)
    torch.manual_seed(cfg.train.seed)
    model = adapt_model(base, cfg)
    specs = travelling_specs(model)
    state = get_travelling_state(model)
    nodes = wait_for_nodes(grid, fed.min_sites, fed.node_wait, since=run_started)
    if len(nodes) < fed.min_sites:
        msg = f"only {len(nodes)} of the {fed.min_sites} sites needed connected within {fed.node_wait:.0f}s"
        log.error("run stopped before round 1: %s", msg)
        return _finish(out, FederationResult("stopped", 0), msg)
    strategy = make_strategy(cfg, specs, paths, len(nodes))
    strategy.summary()
    history: list[dict[str, Any]] = []
    first_round = 1
    if (ckpt := start.checkpoint) is not None:
        state, history, first_round = ckpt["global"], ckpt["history"], ckpt["round"] + 1
        strategy.restore(ckpt["strategy"])
        torch.set_rng_state(ckpt["rng"])
        trim_received(out, ckpt["round"])
        log.info("resuming after round %d from %s%s", ckpt["round"], out / "checkpoints",
                 f" with changed config keys {start.changes}" if start.changes else "")
    dm = cfg.demographics
    if dm.gmm and dm.gmm_scope == "federated" and not strategy.gmm:  # a resumed run kept its GMM
        try:
            strategy.gmm = fit_federated_gmm(grid, nodes, cfg, strategy.config_values).state_dict()
        except FederatedGMMError as e:
            log.error("run stopped before round 1: %s", e)
            return _finish(out, FederationResult("stopped", 0), str(e))
    names = site_names(paths)
    tracker = Tracker(out / TB_DIR, cfg.tracking.tensorboard, resume_step=first_round if paths.resume else None)
    for server_round in range(first_round, fed.rounds + 1):
        new_state, entry = None, {}
        for attempt in range(fed.round_retries + 1):
            started = time.monotonic()
            replies = grid.send_and_receive(strategy.configure_train(server_round, ArrayRecord(state),
                                                                     ConfigRecord(), grid),
                                            timeout=fed.round_timeout)
            replies = list(replies)
            arrays, metrics = strategy.aggregate_train(server_round, replies)
            entry = {
                "round": server_round, "attempt": attempt + 1, "answered": len(replies),
                "valid": len(strategy.report.accepted),
                "rejected": {str(r.node_id): r.reason for r in strategy.report.rejected},
                "train_loss": float(dict(metrics or {}).get("train-loss", float("nan"))),
                "bytes_received": strategy.bytes_received, "seconds": round(time.monotonic() - started, 2),
                **strategy.info, **({"config_changes": start.changes} if start.changes else {}),
                **_site_detail(strategy, names),
            }
            privacy = f", epsilon {entry['epsilon']:.3g} (delta {cfg.privacy.delta:g})" if "epsilon" in entry else ""
            compute = entry["compute_seconds"] / entry["site_seconds"] if entry["site_seconds"] else float("nan")
            log.info("round %d: %d sites answered, %d valid, train loss %.4f, alpha %s, %.2f MiB received, %.1fs "
                     "(sites %.1fs, %.0f%% in the model's passes)%s",
                     server_round, entry["answered"], entry["valid"], entry["train_loss"],
                     entry.get("alpha", "-"), entry["bytes_received"] / 2**20, entry["seconds"], entry["site_seconds"],
                     100 * compute, privacy)
            if arrays is not None:
                new_state = state_from_record(arrays)
                break
            log.warning("round %d attempt %d: %d valid replies < min_sites=%d%s", server_round, attempt + 1,
                        entry["valid"], fed.min_sites, ", retrying" if attempt < fed.round_retries else "")
        history.append(entry)
        if new_state is None:
            msg = (f"round {server_round} had fewer than min_sites={fed.min_sites} valid replies after "
                   f"{fed.round_retries + 1} attempt(s); last checkpoint is round {server_round - 1}")
            log.error("run stopped: %s", msg)
            tracker.round(entry)
            tracker.close()
            return _finish(out, FederationResult("stopped", server_round - 1, history, global_state=state), msg)
        state = new_state
        if fed.eval_every > 0 and server_round % fed.eval_every == 0 and server_round < fed.rounds:
            entry["eval"] = _evaluate(grid, strategy, state, server_round, fed.round_timeout)
        _log_received(out, strategy)
        tracker.round(entry)
        save_checkpoint(out / "checkpoints", server_round, state, strategy.checkpoint_state(), cfg.to_flat(),
                        history, start.pins)
        del replies
        release_freed_memory()  # the round's replies and their parsed tensors, back to the OS
    result = FederationResult("completed", fed.rounds, history, global_state=state)
    result.metrics = _evaluate(grid, strategy, state, fed.rounds, fed.round_timeout)
    if history and fed.eval_every > 0:
        history[-1]["eval"] = result.metrics
    labels = site_labels(strategy, names, strategy.site_metrics)
    result.site_metrics = {labels[k]: v for k, v in strategy.site_metrics.items()}  # before select_split's pass
    if fed.select_split == fed.eval_split:
        result.select_metrics = dict(result.metrics)
    elif fed.select_split:
        result.select_metrics = _evaluate(grid, strategy, state, fed.rounds, fed.round_timeout, fed.select_split)
    tracker.evaluation(fed.rounds, result.metrics)
    tracker.close()
    _log_received(out, strategy)
    log.info("final evaluation over %d sites: %s", len(result.site_metrics),
             {k: round(v, 4) for k, v in result.metrics.items() if "visit" not in k})
    return _finish(out, result, "")


def site_names(paths: RunPaths) -> list[str]:
    """The sites' names as their data gives them (a manifest's site_id), by partition-id, where the
    server knows the federation (simulation); empty in a deployment, whose nodes keep their node ids."""
    if not paths.data_root:
        return []
    manifests = find_manifests(paths.data_root)
    if paths.data_sites:  # the nodes' partitions are these sites, in this order (clients.site_runtime)
        manifests = [manifests[int(i)] for i in paths.data_sites.split(",")]
    names = []
    for manifest in manifests:
        with manifest.open(newline="", encoding="utf-8-sig") as f:
            row = next(csv.DictReader(f), None)
        names.append(((row or {}).get("site_id") or "").strip() or manifest.parent.name)
    return names


def site_labels(strategy: FederatedStrategy, names: list[str], nodes) -> dict[int, str]:
    """Each node's site name (its partition's, from its "site" record), else its Flower node id; two
    nodes claiming one partition keep their node ids beside the name."""
    def name(node: int) -> str:
        pid = strategy.partitions.get(node)
        return names[pid] if pid is not None and 0 <= pid < len(names) else str(node)
    labels = {node: name(node) for node in nodes}
    taken = list(labels.values())
    return {node: label if taken.count(label) == 1 else f"{label} (node {node})" for node, label in labels.items()}


def _site_detail(strategy: FederatedStrategy, names: list[str]) -> dict[str, Any]:
    """The round's accepted replies: examples in all, each site's train loss, examples per visit (FedTAR)."""
    sites = strategy.site_train
    labels = site_labels(strategy, names, sites)
    visits = sorted({int(k.rsplit("-", 1)[1]) for m in sites.values() for k in m if k.startswith("n-visit-")})
    out: dict[str, Any] = {"examples": sum(float(m.get("num-examples", 0.0)) for m in sites.values()),
                           # summed over the sites: the model's passes, and the whole train handler
                           "compute_seconds": round(sum(float(m.get("compute-seconds", 0.0)) for m in sites.values()), 2),
                           "site_seconds": round(sum(float(m.get("site-seconds", 0.0)) for m in sites.values()), 2),
                           "site_train_loss": {labels[node]: float(m["train-loss"])
                                               for node, m in sites.items() if "train-loss" in m}}
    if visits:
        out["visit_examples"] = {str(t): sum(float(m.get(f"n-visit-{t}", 0.0)) for m in sites.values())
                                 for t in visits}
    return out


def _write_run_file(out: Path, cfg: FedTARConfig, paths: RunPaths, start: RunStart) -> None:
    """What `fedtar evaluate --model OUT` needs to rebuild the final model (the base and the config) and
    what the run is pinned to (their hashes); a resume that changed keys is listed under "resumes"."""
    path = out / RUN_FILE
    previous = json.loads(path.read_text()) if start.checkpoint is not None and path.is_file() else {}
    resumes = previous.get("resumes", [])
    if start.checkpoint is not None:
        resumes.append({"after_round": start.checkpoint["round"], "config_changes": start.changes})
    path.write_text(json.dumps({"base_dir": str(Path(paths.base_dir).resolve()), "config": cfg.to_flat(),
                                **start.pins, **({"resumes": resumes} if resumes else {})}, indent=2, default=str))


def _log_received(out: Path, strategy: FederatedStrategy) -> None:
    """Append the digests of the replies received so far (sites check them against their audit logs)."""
    with (out / RECEIVED_FILE).open("a") as f:
        for entry in strategy.received:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
    strategy.received = []


def _evaluate(grid: Grid, strategy: FederatedStrategy, state: dict[str, torch.Tensor], server_round: int,
              timeout: float, split: str | None = None) -> dict[str, float]:
    """The sites' metrics on `split` (default `federation.eval_split`) for `state` (example-weighted means;
    per site on the strategy)."""
    split = split or strategy.cfg.federation.eval_split
    messages = strategy.configure_evaluate(server_round, ArrayRecord(state), ConfigRecord({"split": split}), grid)
    return dict(strategy.aggregate_evaluate(server_round, grid.send_and_receive(messages, timeout=timeout)) or {})


def _finish(out: Path, result: FederationResult, message: str) -> FederationResult:
    payload = {"status": result.status, "message": message, "rounds_done": result.rounds_done,
               "history": result.history, "metrics": result.metrics, "site_metrics": result.site_metrics,
               **({"select_metrics": result.select_metrics} if result.select_metrics else {})}
    (out / RESULTS_FILE).write_text(json.dumps(payload, indent=2, default=float))
    if result.global_state:
        torch.save(result.global_state, out / FINAL_STATE_FILE)
    return result
