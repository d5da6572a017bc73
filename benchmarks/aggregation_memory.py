"""Benchmark 4b: the server's peak memory while it aggregates one round, against the number of sites.

The server alone (no training): K sites reply with per-visit states (FedTAR, 3 visits) or one
state (FedAvg) of the demo model's travelling set at hidden 64 (benchmarks/simulation_scale.py's
model), small perturbations of the global, and the strategy aggregates them. Each K runs in its
own process, so its peak RSS is that round's. The goal (issue 12): from the second-to-last to the
last K, peak RSS grows by at most 1.1x the extra reply bytes in flight (Flower's ArrayRecords,
which every engine holds until the round is aggregated). The peak once the replies are in, before
aggregation, is reported beside it: its growth is the cost of holding the replies themselves
(bytes plus Flower's per-array Python objects). Writes
benchmarks/results/aggregation_memory.json.

    python benchmarks/aggregation_memory.py [--sites 4,16,64] [--strategies fedtar,fedavg]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from fedtar.operations.tables import format_table

CHILD = """
import json, resource, sys
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from aggregator.inprocess_grid import InProcessGrid
from aggregator.strategies import STRATEGIES
from fedtar.config import load_config
from fedtar.generator.model import build_model
from fedtar.generator.parameters import get_travelling_state, travelling_specs
from fedtar.data.tokenizer import ReportTokenizer
k, name = int(sys.argv[1]), sys.argv[2]
cfg = load_config(overrides={"model.hidden_size": 64, "model.heads": 2, "policy.kind": "uniform",
                             "federation.strategy": name})
model = build_model(cfg, ReportTokenizer.train(["a b c d e f g ."] * 50))
specs, state = travelling_specs(model), get_travelling_state(model)
del model
records = ["visit-1", "visit-2", "visit-3"] if name == "fedtar" else ["arrays"]

def site(i):
    def app(msg, ctx):
        g = torch.Generator().manual_seed(i)
        content, metrics = RecordDict(), {"num-examples": 6.0, "train-loss": 1.0}
        for r in records:
            content[r] = ArrayRecord({n: v + 0.01 * torch.randn(v.shape, generator=g) for n, v in state.items()})
            metrics["n-" + r] = 2.0
        content["metrics"] = MetricRecord(metrics)
        return Message(content=content, reply_to=msg)
    return app

grid = InProcessGrid([site(i) for i in range(k)], [{} for _ in range(k)])
strategy = STRATEGIES[name](cfg, specs, {})
replies = grid.send_and_receive(strategy.configure_train(1, ArrayRecord(state), None, grid))
received = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
arrays, _ = strategy.aggregate_train(1, replies)
assert arrays is not None
print(json.dumps({"reply_bytes": sum(r.count_bytes() for m in replies for r in m.content.array_records.values()),
                  "received_peak_rss_mib": received,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", default="4,16,64")
    p.add_argument("--strategies", default="fedtar,fedavg")
    p.add_argument("--out", default="benchmarks/results/aggregation_memory.json")
    args = p.parse_args()
    sites = [int(x) for x in args.sites.split(",")]
    rows, results = [], []
    for name in args.strategies.split(","):
        runs = []
        for k in sites:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(k), name], capture_output=True, text=True,
                                  check=True)
            runs.append({"strategy": name, "sites": k, **json.loads(proc.stdout.strip().splitlines()[-1])})
        a, b = runs[-2], runs[-1]
        growth = (b["peak_rss_mib"] - a["peak_rss_mib"]) / ((b["reply_bytes"] - a["reply_bytes"]) / 2**20)
        for r in runs:
            r["growth_over_extra_replies"] = growth
            rows.append([name, r["sites"], r["reply_bytes"] / 2**20, r["received_peak_rss_mib"], r["peak_rss_mib"]])
        held = (b["received_peak_rss_mib"] - a["received_peak_rss_mib"]) / ((b["reply_bytes"] - a["reply_bytes"]) / 2**20)
        rows.append([name, f"{a['sites']}->{b['sites']}", "growth over the extra replies", f"{held:.2f}x",
                     f"{growth:.2f}x (goal <= 1.1)"])
        results += runs
    print(format_table(["strategy", "sites", "MiB of replies", "peak RSS MiB, replies received",
                        "peak RSS MiB, aggregated"], rows, digits=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "results": results}, indent=2))


if __name__ == "__main__":
    main()
