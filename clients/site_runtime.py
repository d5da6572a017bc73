"""What a site does locally: load its data and model, train per visit, validate, evaluate.

The Flower ClientApp (client_app.py) only unpacks messages and calls these.
Everything here runs at the site; what it returns to the app is tensors of
trainable parameters and numbers, nothing else.
"""

from __future__ import annotations

import datetime as dt
import logging
import statistics
import types
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from data_adapters.records import find_manifests
from fedtar.config import FedTARConfig, apply_overrides
from fedtar.data.site import SiteData, load_site
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import ReportGenerator, adapt_model, load_model
from fedtar.generator.parameters import get_travelling_state, set_travelling_state
from fedtar.learning.training import (
    GradCorrection,
    TrainStats,
    make_optimizer,
    mean_loss,
    resolve_device,
    train_local,
    validation_gradient,
)
from fedtar.operations.heap import release_freed_memory
from fedtar.scoring.evaluation import evaluate_model, flat_metrics

log = logging.getLogger(__name__)
State = dict[str, torch.Tensor]


@dataclass
class SiteRuntime:
    cfg: FedTARConfig
    site: SiteData
    model: ReportGenerator
    tokenizer: ReportTokenizer
    index: int  # the site's position (seeds only)


# Per process: a simulation actor (or the in-process engine) serves many sites and reuses the
# ones it loaded; a hospital node serves one. Bounded by the bytes of the runtimes' tensors
# (model, exam metadata, the image caches as filled so far), measured whenever a site is asked
# for (client.runtime_cache_mib); least recently used out first; the site asked for always
# stays, even alone over the bound.
_RUNTIMES: OrderedDict[tuple, SiteRuntime] = OrderedDict()


_NOT_WALKED = (str, bytes, int, float, bool, type, types.ModuleType, types.FunctionType, types.MethodType,
               types.BuiltinFunctionType)


def tensor_bytes(*objects: object) -> int:
    """Bytes of the distinct tensor storages reachable from `objects` (modules, dataclasses,
    dicts, lists, plain objects): an estimate of what keeping them costs."""
    seen_storages: set[int] = set()
    seen: set[int] = set()
    total = 0
    stack = list(objects)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, _NOT_WALKED):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen_storages:
                seen_storages.add(storage.data_ptr())
                total += storage.nbytes()
        elif isinstance(obj, torch.nn.Module):
            stack.extend(obj.state_dict(keep_vars=True).values())
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return total


def resolve_manifest(node_config: dict, data_root: str | None, data_sites: str = "") -> Path:
    """A hospital node names its manifest; a simulated node maps partition-id to a site.

    `data_sites` ("0,1,3") restricts the simulated nodes to those sites, in that order
    (leave-one-site-out runs).
    """
    if "manifest" in node_config:
        return Path(str(node_config["manifest"]))
    if not data_root or "partition-id" not in node_config:
        raise ValueError("node config needs 'manifest' (a site's manifest.csv), or 'partition-id' with a "
                         "data root in the run config")
    manifests = find_manifests(data_root)
    if data_sites:
        manifests = [manifests[int(i)] for i in str(data_sites).split(",")]
    pid = int(node_config["partition-id"])
    if pid >= len(manifests):
        raise ValueError(f"partition-id {pid} but the federation in {data_root} has {len(manifests)} sites")
    return manifests[pid]


def site_runtime(cfg_flat: dict, base_dir: str | Path, manifest: str | Path, index: int) -> SiteRuntime:
    # The index seeds the site's draws: a leave-one-site-out run gives a site another index than the
    # full run, so it is part of the key (else the results would depend on which run came first).
    key = (tuple(sorted((k, str(v)) for k, v in cfg_flat.items())), str(base_dir), str(manifest), index)
    if key in _RUNTIMES:
        _RUNTIMES.move_to_end(key)
        rt = _RUNTIMES[key]
        _evict(rt.cfg.client.runtime_cache_mib)
        return rt
    cfg = apply_overrides(FedTARConfig(), cfg_flat)
    base, tokenizer = load_model(base_dir)
    torch.manual_seed(cfg.train.seed)  # same adapter init at every site (the global overwrites it)
    model = adapt_model(base, cfg).to(resolve_device(cfg.train.device))
    site = load_site(manifest, tokenizer, cfg)
    if site.exams.skipped:
        log.warning("site %s: %d manifest rows skipped", site.name, len(site.exams.skipped))
    rt = SiteRuntime(cfg, site, model, tokenizer, index)
    _RUNTIMES[key] = rt
    _evict(cfg.client.runtime_cache_mib)
    return rt


def _evict(budget_mib: float) -> None:
    """Drop least recently used runtimes until the rest fit `budget_mib` (the newest always stays)."""
    sizes = {key: tensor_bytes(rt) for key, rt in _RUNTIMES.items()}
    total = sum(sizes.values())
    evicted = False
    while len(_RUNTIMES) > 1 and total > budget_mib * 2**20:
        key, _ = _RUNTIMES.popitem(last=False)
        total -= sizes[key]
        evicted = True
    if evicted:
        release_freed_memory()  # the evicted runtimes' tensors and records, back to the OS


def _generator(rt: SiteRuntime, server_round: int, salt: int = 0) -> torch.Generator:
    """Seeds depend on (seed, round, site, visit) only, so a resumed run repeats the same draws.

    The global RNG (dropout) is reseeded too: a site process may have served other rounds or runs.
    """
    seed = rt.cfg.train.seed * 1_000_003 + server_round * 1009 + rt.index * 31 + salt
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class VisitUpdate:
    visit: int
    state: State
    examples: int
    loss: float
    mean_years_since_prior: float
    mean_study_year: float  # calendar time of the visit's exams (fractional year): the policy's recency input
    compute_seconds: float = 0.0  # forward, backward and optimizer steps (fedtar.learning.training.TrainStats)


def fractional_year(date: dt.date) -> float:
    return date.year + (date.timetuple().tm_yday - 1) / 365.25


def train_per_visit(rt: SiteRuntime, global_state: State, server_round: int) -> list[VisitUpdate]:
    """FedTAR's client round: one trained state per visit index (DESIGN.md section 3)."""
    updates = []
    start = global_state
    for t in rt.site.visits:
        exams = rt.site.split("train", visit=t)
        if not exams.num_examples():
            continue
        set_travelling_state(rt.model, start)
        optimizer = make_optimizer(rt.model, rt.cfg.train)
        stats = train_local(rt.model, exams, rt.cfg.train, rt.cfg.data.batch_size, optimizer,
                            generator=_generator(rt, server_round, t), epochs=rt.cfg.client.local_epochs)
        state = get_travelling_state(rt.model)
        rows = exams.rows().tolist()
        days = [exams.records[i].days_since_prior for i in rows]
        years = [fractional_year(exams.records[i].study_date) for i in rows]
        updates.append(VisitUpdate(t, state, exams.num_examples(), stats.loss, statistics.fmean(days) / 365.25,
                                   statistics.fmean(years), stats.compute_seconds))
        if rt.cfg.client.visit_start == "chained":
            start = state
    return updates


def train_pooled(rt: SiteRuntime, start_state: State, server_round: int,
                 correction: GradCorrection | None = None) -> tuple[State, int, TrainStats]:
    """The baselines' client round: all visits pooled. Returns (state, exams trained on, stats)."""
    set_travelling_state(rt.model, start_state)
    exams = rt.site.split("train")
    stats = train_local(rt.model, exams, rt.cfg.train, rt.cfg.data.batch_size, make_optimizer(rt.model, rt.cfg.train),
                        correction=correction, generator=_generator(rt, server_round),
                        epochs=rt.cfg.client.local_epochs)
    return get_travelling_state(rt.model), exams.num_examples(), stats


def site_validation_gradient(rt: SiteRuntime, state: State) -> tuple[State, int]:
    """grad of the site's validation loss at `state` (for meta.validation = federated)."""
    set_travelling_state(rt.model, state)
    return validation_gradient(rt.model, rt.site.validation(rt.cfg.meta.recent_fraction), rt.cfg.data.batch_size)


def evaluate_site(rt: SiteRuntime, state: State, split: str = "test") -> dict[str, float]:
    """Aggregate metrics of the site's held-out patients: overall and per visit index."""
    set_travelling_state(rt.model, state)
    exams = rt.site.split(split)
    if not exams.num_examples():  # a site may hold no patient of the split (weight 0 in the means)
        return {"num-examples": 0.0}
    ev = evaluate_model(rt.model, [exams], rt.tokenizer, num_beams=rt.cfg.client.eval_beams,
                        with_meteor=rt.cfg.client.eval_meteor)
    out = flat_metrics(ev)
    out["loss"] = mean_loss(rt.model, exams, rt.cfg.data.batch_size)  # memory bounded by the batch, as training
    out["num-examples"] = float(exams.num_examples())
    return out
