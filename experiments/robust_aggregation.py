"""Poisoning defence on a model that learns (issue 24): one poisoning site of four.

In process, the FTA v2 configuration (experiments/fta2.toml: its [config], its [synthetic]
conditions and its base, trained on the same public pool; reused from the sweep's folder when it
is there) with fewer patients and rounds for the budget, at the learning rate the v2 sweep chose
for FedTAR. Site 4 is the attacker (clients/poisoning.py):

- `flip`: it trains honestly, then uploads its update sign-flipped and scaled;
- `boost`: its honest update scaled (a bound under `federation.norm_bound` passes the norm guard);
- `labels`: it trains on its own images with other exams' reports (label-flipped reports) and
  uploads that update scaled by the same factor as boost;
- `visit`: FedTAR-specific, the update of one visit index only (the last) sign-flipped and scaled.

Every robust mode (`federation.robust`) runs with no attacker (the price) and under each attack
(the protection); reported per setting, mean ± std over seeds: test CIDEr, CE-F1 and BLEU-4, and
the share of the clean undefended run's CIDEr kept. The base before any federated round is scored
too. Runs are cached in --work (resumable: rerun the same command; one work folder per set of
options, the cache is keyed by mode, attack and seed only). Writes --out (JSON) and prints a table.

    python experiments/robust_aggregation.py [--seeds 0,1,2] [--rounds 5] [--work runs/experiments/robust]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from aggregator.experiment import load_sweep, measure_start
from aggregator.inprocess_grid import InProcessGrid
from aggregator.robust import ROBUST_MODES
from aggregator.server_app import run_from_values
from clients.client_app import app as client_app
from clients.poisoning import poisoning_app, shuffled_reports
from data_adapters.records import find_manifests
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import apply_overrides, load_config, parse_set_args
from fedtar.generator.model import build_model, load_model
from fedtar.learning.pretrain import pretrain_base, public_pool_config
from fedtar.operations.tables import format_table
from fedtar.scoring.evaluation import evaluate_manifests, flat_metrics

SWEEP = "experiments/fta2.toml"
SITES = 4
# The robust modes' parameters for 4 sites: trimmed-mean cuts one site per tail (which, with 4
# sites, is the median: the mean of the two middle values), multikrum assumes one hostile site and
# averages the two best-scored states (`--modes multikrum-keep3`: the three, n - f as in Blanchard et al.).
ROBUST = {"federation.min_sites": 2, "federation.trim_beta": 0.25, "federation.krum_byzantine": 1,
          "federation.krum_keep": 2}
METRICS = ("cider", "ce_f1", "bleu4")


def attacks(flip: float, boost: float, visit: int) -> dict[str, dict[str, Any]]:
    return {"none": {},
            "flip": {"kind": "flip", "scale": flip},
            "boost": {"kind": "boost", "scale": boost},
            "labels": {"kind": "boost", "scale": boost, "shuffled": True},
            "visit": {"kind": "flip", "scale": 2 * flip, "visit": visit}}


def mode_values(mode: str) -> dict[str, Any]:
    """A --modes entry: a federation.robust mode, or multikrum-keepK (Multi-Krum averaging K states)."""
    robust, _, keep = mode.partition("-keep")
    return {"federation.robust": robust, **({"federation.krum_keep": int(keep)} if keep else {})}


def run_case(model: dict[str, Any], base: Path, fed: Path, out: Path, mode: str, attack: dict[str, Any], seed: int,
             rounds: int) -> Any:
    """One FedTAR run: sites 1-3 honest, site 4 honest (no attack) or poisoning."""
    nodes: list[dict[str, Any]] = [{"partition-id": i, "num-partitions": SITES} for i in range(SITES)]
    apps = [client_app] * SITES
    if attack:
        shuffled = shuffled_reports(find_manifests(fed)[-1], seed) if attack.get("shuffled") else None
        apps[-1] = poisoning_app(attack["kind"], attack["scale"], attack.get("visit"), train_manifest=shuffled)
    values = {**model, "base-dir": str(base), "data-root": str(fed), "out-dir": str(out),
              "federation.rounds": rounds, **mode_values(mode), "train.seed": seed,
              # the cached case is the mark of a finished run: a folder without one was cut off, start it over
              "overwrite": True}
    return run_from_values(InProcessGrid(apps, nodes), values)


def score_base(model_values: dict[str, Any], base: Path, fed: Path, work: Path) -> dict[str, dict[str, float]]:
    """On the sites' test splits: the start of every run (the sweep's own measure_start), and a model of
    the same architecture with random weights (what "writes no report" scores)."""
    cfg = load_config(overrides=model_values)
    start = measure_start(work, cfg, base, str(fed))[cfg.federation.eval_split]
    model, tokenizer = load_model(base)
    torch.manual_seed(0)
    untrained = build_model(apply_overrides(model.cfg, {"train.base": "trainable"}), tokenizer)
    evaluation, _ = evaluate_manifests(untrained, tokenizer, find_manifests(fed), cfg.federation.eval_split,
                                       num_beams=cfg.client.eval_beams, with_meteor=False)
    return {"start": start, "untrained": flat_metrics(evaluation)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--modes", default=",".join(ROBUST_MODES))
    p.add_argument("--attacks", default="none,flip,boost,labels,visit")
    p.add_argument("--conditions", choices=("plain", "fta"), default="fta",
                   help="plain: the default synthetic federation (train and test alike); fta: the v2 sweep's FTA "
                        "conditions (a prospective split after each site's drift, which the base's pool covers)")
    p.add_argument("--patients", type=int, default=40, help="per site (the v2 sweep: 100)")
    p.add_argument("--visits", type=int, default=4)
    p.add_argument("--flip-scale", type=float, default=4.0)
    p.add_argument("--boost-scale", type=float, default=8.0)
    p.add_argument("--visit", type=int, default=0, help="the visit index the visit attack targets (0: the last)")
    p.add_argument("--lr", type=float, default=3e-4, help="FedTAR's rate in the v2 sweep's search")
    p.add_argument("--pretrain-epochs", type=int, default=0, help="the base's epochs on the pool (0: the sweep's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config key over the sweep's")
    p.add_argument("--base", default="runs/experiments/fta2/base",
                   help="the v2 sweep's base folder (copied into --work; retrained there if it does not match)")
    p.add_argument("--work", default="runs/experiments/robust")
    p.add_argument("--out", default="experiments/results/robust_aggregation.json")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    modes = args.modes.split(",")
    table = attacks(args.flip_scale, args.boost_scale, args.visit or args.visits)
    names = args.attacks.split(",")
    work = Path(args.work)
    sweep = load_sweep(SWEEP)
    model = {**sweep.config, **ROBUST, "train.lr": args.lr, **parse_set_args(args.set)}
    synthetic = sweep.synthetic_config() if args.conditions == "fta" else \
        SyntheticConfig(image_size=sweep.synthetic_config().image_size)
    federation = dataclasses.replace(synthetic, sites=SITES, patients=args.patients, visits=args.visits, seed=9)
    pool = sweep.pretraining_pool() if args.conditions == "fta" else \
        dataclasses.replace(public_pool_config(), image_size=federation.image_size)
    # A copy of the sweep's base (never trained over in place): pretrain_base reuses it when its
    # pretraining matches this configuration's, and trains a new one in the copy's place if not.
    if not (work / "base").is_dir() and Path(args.base).is_dir():
        shutil.copytree(args.base, work / "base")
    base = pretrain_base(work / "base", load_config(overrides=sweep.config),
                         epochs=args.pretrain_epochs or sweep.experiment.pretrain_epochs or None,
                         pool=pool)
    fed = work / "fed"
    if not (fed / "federation.json").is_file():
        generate_federation(fed, federation)
    base_file = work / "base-metrics.json"
    if not base_file.is_file():
        base_file.write_text(json.dumps(score_base(model, base, fed, work)))
    base_metrics = json.loads(base_file.read_text())
    results: list[dict[str, Any]] = []
    for seed in seeds:
        for mode in modes:
            for name in names:
                case = work / "cases" / f"{mode}-{name}-{seed}.json"
                if not case.is_file():
                    t0 = time.time()
                    r = run_case(model, base, fed, work / "runs" / f"{mode}-{name}-{seed}", mode, table[name], seed,
                                 args.rounds)
                    case.parent.mkdir(parents=True, exist_ok=True)
                    case.write_text(json.dumps({
                        "seed": seed, "robust": mode, "attack": name, **table[name], "status": r.status,
                        "valid_per_round": [e["valid"] for e in r.history],
                        **{m: r.metrics.get(m) for m in (*METRICS, "loss", "cmp_acc")},
                        "seconds": round(time.time() - t0, 1)}))
                results.append(json.loads(case.read_text()))
                print(json.dumps(results[-1]), flush=True)
    summary = summarise(results, modes, names)
    for name, m in base_metrics.items():
        print(f"{name}: CIDEr {m['cider']:.3f}, CE-F1 {m['ce_f1']:.3f}, BLEU-4 {m['bleu4']:.3f}")
    print(format_table(["robust", "site 4", "CIDEr", "kept", "CE-F1", "BLEU-4", "min valid"], summary))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds, "seeds": seeds, "config": model,
        "federation": dataclasses.asdict(federation), "base": str(base),
        "attacks": {n: table[n] for n in names}, "base_metrics": base_metrics, "results": results,
        "table": summary}, indent=2))


def summarise(results: list[dict[str, Any]], modes: list[str], names: list[str]) -> list[list[str]]:
    """Mean ± std per (mode, attack); `kept` is the share of the clean undefended run's CIDEr."""
    clean = [r["cider"] for r in results if r["robust"] == "none" and r["attack"] == "none"]
    rows = []
    for mode in modes:
        for name in names:
            runs = [r for r in results if r["robust"] == mode and r["attack"] == name]
            if not runs:
                continue
            cider = [r["cider"] for r in runs]
            kept = f"{statistics.fmean(cider) / statistics.fmean(clean):.0%}" if clean else "-"
            rows.append([mode, name, _mean_sd(cider), kept, _mean_sd([r["ce_f1"] for r in runs]),
                         _mean_sd([r["bleu4"] for r in runs]), str(min(v for r in runs for v in r["valid_per_round"]))])
    return rows


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f}±{statistics.stdev(values):.3f}"


if __name__ == "__main__":
    main()
