"""Benchmark 2: what each site uploads, per round and per run, against the model's size.

FedTAR uploads one travelling state per visit index (T per round); pooled
baselines upload one. Sizes come from `fedtar.parameters` (the one list of
travelling tensors) for the demo model and for the paper's backbone shapes
(CvT-21 + DistilGPT2 built from configs with random weights: nothing is
downloaded). Writes benchmarks/results/communication.json.

    python benchmarks/communication.py [--visits 5] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fedtar.config import load_config
from fedtar.model import build_model
from fedtar.parameters import size_report
from fedtar.tables import format_table
from fedtar.tokenizer import ReportTokenizer
from paper_model import paper_model  # benchmarks/paper_model.py (scripts run from the repo root)


def demo_model():
    tok = ReportTokenizer.train(["there is a small left pleural effusion ."])
    return build_model(load_config(), tok)


def paper_size_model():
    """CvT-21 (384 px) + DistilGPT2 shapes, random weights, built from local folders."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return paper_model(tmp)[0]


def rows_for(name: str, sizes: dict, visits: int, rounds: int) -> list[list[object]]:
    per_state = sizes["travelling_bytes"]
    n = int(sizes["travelling_params"])
    return [
        [name, "travelling state", n, per_state / 2**20, 100 * sizes["share"]],
        [name, "FedTAR, per site and round", n * visits, per_state * visits / 2**20, 100 * sizes["share"] * visits],
        [name, "FedAvg, per site and round", n, per_state / 2**20, 100 * sizes["share"]],
        [name, f"FedTAR, per site and run ({rounds} rounds)", n * visits * rounds,
         per_state * visits * rounds / 2**20, float("nan")],
        [name, "whole model", int(sizes["total_params"]), sizes["total_params"] * 4 / 2**20, 100.0],
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visits", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/communication.json")
    args = p.parse_args()
    demo, paper = size_report(demo_model()), size_report(paper_size_model())
    rows = rows_for("demo", demo, args.visits, args.rounds) + rows_for("paper", paper, args.visits, args.rounds)
    print(format_table(["model", "what", "parameters", "MiB", "% of model"], rows, digits=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "visits": args.visits,
                                          "rounds": args.rounds, "demo_model": demo, "paper_model": paper}, indent=2))


if __name__ == "__main__":
    main()
