"""Which `model.prior` serves comparison-to-prior accuracy best, and at what cost?

Trains one small base per prior mode from scratch on the same public pool
(same seed, same steps) and scores held-out patients of a separate
federation. Writes experiments/results/prior_modes.json and prints a table.

    python experiments/prior_modes.py [--epochs 16] [--hidden 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import load_config
from fedtar.evaluation import evaluate_model
from fedtar.model import load_model
from fedtar.pretrain import pretrain_base
from fedtar.site import load_site
from fedtar.tables import format_table

MODES = ("none", "image", "report", "both")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--out", default="experiments/results/prior_modes.json")
    args = p.parse_args()
    pool = SyntheticConfig(sites=3, patients=60, visits=4, seed=500, image_size=64, site_prefix="public",
                           first_site_index=100)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        fed = generate_federation(Path(tmp) / "fed", SyntheticConfig(sites=2, patients=50, visits=4, seed=5,
                                                                     image_size=64))
        for mode in MODES:
            cfg = load_config(overrides={"model.hidden_size": args.hidden, "model.layers": 2, "model.heads": 2,
                                         "model.prior": mode})
            start = time.time()
            base_dir = pretrain_base(Path(tmp) / mode, cfg, epochs=args.epochs, lr=3e-3, pool=pool)
            seconds = time.time() - start
            model, tok = load_model(base_dir)
            sites = [load_site(m, tok, model.cfg) for m in fed]
            ev = evaluate_model(model, [s.split("test") for s in sites], tok)
            results[mode] = {**{k: ev.overall[k] for k in ("bleu4", "cider", "ce_f1", "cmp_acc", "cmp_n")},
                             "train_seconds": seconds}
            rows.append([mode, ev.overall["bleu4"], ev.overall["cider"], ev.overall["ce_f1"], ev.overall["cmp_acc"],
                         seconds])
    print(format_table(["prior", "bleu4", "cider", "ce_f1", "cmp_acc", "train s"], rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"epochs": args.epochs, "hidden": args.hidden, "results": results},
                                         indent=2))


if __name__ == "__main__":
    main()
