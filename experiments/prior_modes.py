"""Which `model.prior` serves comparison-to-prior accuracy best, and at what cost?

Trains one small base per prior mode from scratch on the same public pool
(same seed, same steps) and scores held-out patients of a separate
federation. Writes experiments/results/prior_modes.json and prints a table.

    python experiments/prior_modes.py [--epochs 16] [--hidden 64] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import V1_GENERATOR, load_config
from fedtar.data.site import load_site
from fedtar.generator.model import load_model
from fedtar.learning.pretrain import pretrain_base
from fedtar.operations.tables import format_table
from fedtar.scoring.evaluation import evaluate_model

MODES = ("none", "image", "report", "both")


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f}±{statistics.stdev(values):.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--seeds", default="0,1,2", help="training seeds (the pool and federation stay fixed)")
    p.add_argument("--out", default="experiments/results/prior_modes.json")
    args = p.parse_args()
    pool = SyntheticConfig(sites=3, patients=60, visits=4, seed=500, image_size=64, site_prefix="public",
                           first_site_index=100)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        fed = generate_federation(Path(tmp) / "fed", SyntheticConfig(sites=2, patients=50, visits=4, seed=5,
                                                                     image_size=64))
        seeds = [int(x) for x in args.seeds.split(",")]
        for mode in MODES:
            runs = []
            for seed in seeds:
                # The v1 generator for every mode (what this comparison ran with; the change head needs
                # the prior image, so it would exist for two of the four modes only).
                cfg = load_config(overrides={"model.hidden_size": args.hidden, "model.layers": 2, "model.heads": 2,
                                             "model.prior": mode, "train.seed": seed, **V1_GENERATOR})
                start = time.time()
                base_dir = pretrain_base(Path(tmp) / f"{mode}-{seed}", cfg, epochs=args.epochs, lr=3e-3, pool=pool)
                seconds = time.time() - start
                model, tok = load_model(base_dir)
                sites = [load_site(m, tok, model.cfg) for m in fed]
                ev = evaluate_model(model, [s.split("test") for s in sites], tok)
                runs.append({**{k: ev.overall[k] for k in ("bleu4", "cider", "ce_f1", "cmp_acc", "cmp_n")},
                             "train_seconds": seconds})
            results[mode] = runs
            rows.append([mode, *(_mean_sd([r[k] for r in runs]) for k in ("bleu4", "cider", "ce_f1", "cmp_acc")),
                         statistics.fmean(r["train_seconds"] for r in runs)])
    print(format_table(["prior", "bleu4", "cider", "ce_f1", "cmp_acc", "train s"], rows, digits=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"epochs": args.epochs, "hidden": args.hidden, "seeds": seeds,
                                          "date": time.strftime("%Y-%m-%d"), "results": results},
                                         indent=2))


if __name__ == "__main__":
    main()
