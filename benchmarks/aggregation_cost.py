"""Benchmark 3: server aggregation time against the number of replies.

N simulated replies of the demo model's travelling size (random tensors),
aggregated by FedAvg (one state per reply) and by FedTAR (T per-visit states
per reply: T per-visit means and the residual recursion), through the same
functions the strategies call. FedTAR handles T times the bytes, so it is
also timed against FedAvg on the same bytes (FedAvg over N*T replies).
Writes benchmarks/results/aggregation_cost.json.

    python benchmarks/aggregation_cost.py [--sites 10,100,1000] [--visits 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fedtar.config import load_config
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import build_model
from fedtar.generator.parameters import get_travelling_state
from fedtar.learning.temporal_policy import residual_aggregate, weighted_mean
from fedtar.operations.tables import format_table


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", default="10,100,1000")
    p.add_argument("--visits", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/aggregation_cost.json")
    args = p.parse_args()
    template = get_travelling_state(build_model(load_config(), ReportTokenizer.train(["a b c ."])))
    g = torch.Generator().manual_seed(0)
    rows, results = [], []
    for n in [int(x) for x in args.sites.split(",")]:
        # One pool of distinct states reused by reference: memory stays at n*T states at most.
        pool = [{k: torch.randn(v.shape, generator=g) for k, v in template.items()}
                for _ in range(min(n * args.visits, 50))]
        replies = [[pool[(i * args.visits + t) % len(pool)] for t in range(args.visits)] for i in range(n)]
        weights = [float(1 + i % 7) for i in range(n)]
        alpha = torch.full((args.visits,), 1.0 / args.visits)
        fedavg = timed(lambda: weighted_mean([r[0] for r in replies], weights))
        fedavg_same_bytes = timed(lambda: weighted_mean([s for r in replies for s in r], weights * args.visits))
        fedtar = timed(lambda: residual_aggregate(
            template, [weighted_mean([r[t] for r in replies], weights) for t in range(args.visits)], alpha))
        results.append({"replies": n, "fedavg_s": fedavg, "fedavg_same_bytes_s": fedavg_same_bytes,
                        "fedtar_s": fedtar, "fedtar_over_fedavg_same_bytes": fedtar / fedavg_same_bytes})
        rows.append([n, fedavg, fedavg_same_bytes, fedtar, fedtar / fedavg_same_bytes])
    print(format_table(["replies", "FedAvg s", "FedAvg same bytes s", "FedTAR s", "FedTAR / same bytes"], rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "visits": args.visits,
                                          "state_params": sum(v.numel() for v in template.values()),
                                          "results": results}, indent=2))


if __name__ == "__main__":
    main()
