"""Robust aggregation against one poisoning site out of four (federation.robust, issue 15).

In process, the tiny model: a base pretrained briefly on a public pool, a 4-site synthetic
federation, FedTAR for a few rounds. The fourth site trains honestly and uploads poisoned
states (clients/poisoning.py): `flip` (the update sign-flipped and scaled) or `boost` (scaled,
under the norm guard's bound). Each robust mode runs clean and attacked; reported: the final
test loss and BLEU-4, and the distance of the final global to the clean run's global under
`none`, relative to how far that clean global moved from the start. Writes
experiments/results/robust_aggregation.json and prints a table.

    python experiments/robust_aggregation.py [--rounds 3] [--seeds 0] [--flip-scale 4] [--boost-scale 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from aggregator.inprocess_grid import InProcessGrid
from aggregator.server_app import run_from_values
from aggregator.robust import ROBUST_MODES
from clients.client_app import app as client_app
from clients.poisoning import poisoning_app
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import load_config
from fedtar.model import adapt_model, load_model
from fedtar.parameters import get_travelling_state
from fedtar.pretrain import pretrain_base
from fedtar.tables import format_table

# The tests' tiny model (tests/conftest.py TINY_FED), 4 sites; the robust modes' parameters
# suit 4 sites: trimmed-mean cuts one site per tail, multikrum assumes one hostile site and
# averages the two best-scored states.
MODEL = {"model.hidden_size": 32, "model.layers": 1, "model.heads": 2, "data.image_size": 32,
         "demographics.gmm_components": 4, "lora.hyper_dim": 4, "client.local_epochs": 1,
         "client.eval_meteor": False, "train.lr": 1e-3, "lora.alpha": 8, "policy.meta_lr": 0.05,
         "federation.min_sites": 2, "federation.trim_beta": 0.25, "federation.krum_byzantine": 1,
         "federation.krum_keep": 2}
SITES = 4


def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a) ** 0.5


def run_case(base: Path, fed: Path, out: Path, mode: str, poison: str, scale: float, seed: int,
             rounds: int) -> Any:
    """One FedTAR run: sites 1-3 honest, site 4 honest (`poison` = none) or poisoning."""
    apps = [client_app] * (SITES - 1) + [client_app if poison == "none" else poisoning_app(poison, scale)]
    grid = InProcessGrid(apps, [{"partition-id": i, "num-partitions": SITES} for i in range(SITES)])
    values = {**MODEL, "base-dir": str(base), "data-root": str(fed), "out-dir": str(out),
              "federation.rounds": rounds, "federation.robust": mode, "train.seed": seed}
    return run_from_values(grid, values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seeds", default="0")
    p.add_argument("--flip-scale", type=float, default=4.0)
    p.add_argument("--boost-scale", type=float, default=8.0)
    p.add_argument("--out", default="experiments/results/robust_aggregation.json")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    attacks = {"none": 0.0, "flip": args.flip_scale, "boost": args.boost_scale}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        pool = SyntheticConfig(sites=2, patients=12, visits=4, seed=77, image_size=32, site_prefix="public",
                               first_site_index=100)
        base = pretrain_base(Path(tmp) / "base", load_config(overrides=MODEL), epochs=8, lr=3e-3, pool=pool)
        fed = Path(tmp) / "fed"
        generate_federation(fed, SyntheticConfig(sites=SITES, patients=8, visits=3, seed=9, image_size=32))
        for seed in seeds:
            model, _ = load_model(base)
            torch.manual_seed(seed)
            start = get_travelling_state(adapt_model(model, load_config(overrides={**MODEL, "train.seed": seed})))
            clean = None
            for mode in ROBUST_MODES:
                for poison, scale in attacks.items():
                    t0 = time.time()
                    r = run_case(base, fed, Path(tmp) / f"{mode}-{poison}-{seed}", mode, poison, scale, seed,
                                 args.rounds)
                    if mode == "none" and poison == "none":
                        clean = r.global_state
                    assert clean is not None
                    results.append({
                        "seed": seed, "robust": mode, "poison": poison, "scale": scale, "status": r.status,
                        "valid_per_round": [e["valid"] for e in r.history],
                        "test_loss": r.metrics.get("loss"), "bleu4": r.metrics.get("bleu4"),
                        "distance_to_clean": distance(r.global_state, clean) / distance(clean, start),
                        "seconds": round(time.time() - t0, 1)})
                    print(json.dumps(results[-1]), flush=True)
    rows = []
    for mode in ROBUST_MODES:
        for poison in attacks:
            runs = [r for r in results if r["robust"] == mode and r["poison"] == poison]
            rows.append([mode, poison if poison == "none" else f"{poison} x{attacks[poison]:g}",
                         _mean_sd([r["test_loss"] for r in runs]), _mean_sd([r["bleu4"] for r in runs]),
                         _mean_sd([r["distance_to_clean"] for r in runs]),
                         min(v for r in runs for v in r["valid_per_round"])])
    print(format_table(["robust", "site 4", "test loss", "BLEU-4", "dist. to clean / clean's move",
                        "min valid"], rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rounds": args.rounds,
                                          "model": MODEL, "results": results}, indent=2))


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f}±{statistics.stdev(values):.3f}"


if __name__ == "__main__":
    main()
