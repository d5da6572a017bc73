"""Benchmark 4: wall time and peak memory per round against the number of simulated sites.

Each site count runs in its own process (so peak RSS is that run's), with the
in-process engine: the same ServerApp and ClientApp, one site after another,
which is what 2 cores allow. Sites are small (8 patients x 3 visits) so 64
of them fit the time budget; the model is the demo architecture at hidden 64.
The clients share the process here, so their site-runtime cache is pinned
(`client.runtime_cache_mib`, --cache-mib) to the same size at every site count:
what grows with sites is then the server's. The goal (issue 12): peak RSS grows
from the second-to-last to the last site count by at most 1.1x the extra reply
bytes in flight. Writes benchmarks/results/simulation_scale.json.

    python benchmarks/simulation_scale.py [--sites 4,16,64] [--rounds 1] [--validation federated] [--cache-mib 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedtar.operations.tables import format_table

MODEL = {"model.hidden_size": 64, "model.heads": 2, "client.local_epochs": 1, "client.eval_meteor": False}

CHILD = """
import json, resource, sys, time
from aggregator.inprocess_grid import InProcessGrid
from aggregator.server_app import run_from_values
from clients.client_app import app
n, rounds, base, root, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
values = {**json.loads(sys.argv[6]), "base-dir": base, "data-root": root, "out-dir": out,
          "federation.rounds": rounds, "federation.min_sites": 2}
grid = InProcessGrid([app] * n, [{"partition-id": i, "num-partitions": n} for i in range(n)])
start = time.time()
result = run_from_values(grid, values)
print(json.dumps({"status": result.status, "seconds": time.time() - start,
                  "round_seconds": [e["seconds"] for e in result.history],
                  "bytes_per_round": [e["bytes_received"] for e in result.history],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

GENERATE = """
import sys
from data_adapters.synthetic import SyntheticConfig, generate_federation
generate_federation(sys.argv[2], SyntheticConfig(sites=int(sys.argv[1]), patients=8, visits=3, seed=3, image_size=64))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", default="4,16,64")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--validation", choices=("server", "federated"), default="server",
                   help="meta.validation: server holds every site's validation exams in memory")
    p.add_argument("--cache-mib", type=float, default=16.0,
                   help="client.runtime_cache_mib: the in-process clients' cache (the same at every count)")
    p.add_argument("--out", default="benchmarks/results/simulation_scale.json")
    args = p.parse_args()
    from data_adapters.synthetic import SyntheticConfig
    from fedtar.config import load_config
    from fedtar.learning.pretrain import pretrain_base

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        pool = SyntheticConfig(sites=2, patients=10, visits=3, seed=77, image_size=64, site_prefix="public",
                               first_site_index=100)
        base = pretrain_base(Path(tmp) / "base", load_config(overrides=MODEL), epochs=2, pool=pool)
        for n in [int(x) for x in args.sites.split(",")]:
            # The data is written by another process: peak RSS is the federation's alone.
            subprocess.run([sys.executable, "-c", GENERATE, str(n), f"{tmp}/fed{n}"], check=True)
            values = {**MODEL, "meta.validation": args.validation, "client.runtime_cache_mib": args.cache_mib}
            proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(args.rounds), str(base),
                                   f"{tmp}/fed{n}", f"{tmp}/out{n}", json.dumps(values)],
                                  capture_output=True, text=True, check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append({"sites": n, **r})
            rows.append([n, r["status"], max(r["round_seconds"]), r["bytes_per_round"][0] / 2**20, r["peak_rss_mib"]])
    print(format_table(["sites", "status", "s per round", "MiB in per round", "peak RSS MiB"], rows, digits=1))
    growth = None
    if len(results) >= 2:
        a, b = results[-2], results[-1]
        growth = (b["peak_rss_mib"] - a["peak_rss_mib"]) / ((b["bytes_per_round"][0] - a["bytes_per_round"][0]) / 2**20)
        print(f"peak RSS growth {a['sites']} -> {b['sites']} sites over the extra replies in flight: {growth:.2f}x "
              "(goal <= 1.1)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "model": MODEL,
                                          "meta.validation": args.validation, "client.runtime_cache_mib": args.cache_mib,
                                          "growth_over_extra_replies": growth, "results": results}, indent=2))


if __name__ == "__main__":
    main()
