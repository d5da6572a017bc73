"""Round time against compute: how much of a simulated round the model's passes take.

Runs the README's main job (`fedtar simulate`: the synthetic federation, 4 sites, the default
configuration, 3 rounds) with FedTAR and FedAvg on each engine, and reads each round's record
from the run's results.json. Every site's train reply carries "compute-seconds" (forward, backward
and the optimizer's steps, timed in fedtar.learning.training.train_local) and "site-seconds" (its
whole train handler: the site's runtime, the received state, loading and decoding images, training,
the upload's tensors); the server adds them up per round beside the round's wall time. So:

- compute share of the sites' time = compute / site seconds (what loading, decoding, tokenising and
  building uploads cost at the sites);
- compute share of the round = compute / (round wall x sites run at once): one at a time in the
  in-process engine, `min(sites, cores)` Ray actors at once (the rest is the server's side:
  sending, receiving, checking and aggregating replies, the policy's meta step, checkpoints,
  actors waiting on one another).

Round 1 includes loading each site (the runtime cache keeps it for later rounds), so the table
shows it apart.

    python benchmarks/compute_share.py [--work DIR] [--engines inprocess,ray]

Writes benchmarks/results/compute_share.json. Pass the rehearsal's simulate folder with
`--runs DIR` to tabulate a run made elsewhere (benchmarks/rehearsal_scale.py) instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from machine_info import machine_info

from data_adapters.study_jobs import available_cores
from fedtar.operations.tables import format_table

RESULTS = Path(__file__).parent / "results" / "compute_share.json"


def round_shares(results_json: Path, parallel: int) -> list[dict]:
    """Per round: wall, the sites' handler and compute seconds, and the two shares."""
    rows = []
    for entry in json.loads(results_json.read_text())["history"]:
        wall, site, compute = entry["seconds"], entry.get("site_seconds", 0.0), entry.get("compute_seconds", 0.0)
        rows.append({"round": entry["round"], "wall_s": wall, "site_s": site, "compute_s": compute,
                     "share_of_site_time": compute / site if site else float("nan"),
                     "share_of_round": compute / (wall * parallel) if wall else float("nan")})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Rounds after the first (sites already loaded), summed, and round 1 alone."""
    later = [r for r in rows if r["round"] > 1] or rows

    def total(rs: list[dict]) -> dict:
        wall, site, compute = (sum(r[k] for r in rs) for k in ("wall_s", "site_s", "compute_s"))
        return {"rounds": len(rs), "wall_s": round(wall, 2), "site_s": round(site, 2), "compute_s": round(compute, 2),
                "share_of_site_time": round(compute / site, 3) if site else None,
                "share_of_round": round(sum(r["share_of_round"] * r["wall_s"] for r in rs) / wall, 3) if wall else None}
    return {"round_1": total(rows[:1]), "later_rounds": total(later)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="the simulation's folder (default: a temporary one)")
    parser.add_argument("--engines", default="inprocess,ray")
    parser.add_argument("--strategies", default="fedtar,fedavg")
    parser.add_argument("--runs", help="tabulate the runs under this folder (runs/all/<strategy>/seed-0) instead")
    parser.add_argument("--parallel", type=int, help="sites run at once in --runs (default 1)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="compute_share_"))
    cases = {}
    if args.runs:
        for results in sorted(Path(args.runs).glob("runs/all/*/seed-0/results.json")):
            cases[f"{results.parent.parent.name} (given runs)"] = (results, args.parallel or 1)
    else:
        for engine in args.engines.split(","):
            out = work / engine
            cmd = [sys.executable, "-m", "fedtar.cli", "simulate", "--out", str(out), "--engine", engine,
                   "--strategies", args.strategies, "--overwrite"]
            if engine != "inprocess" and (work / "inprocess" / "base").is_dir():
                cmd += ["--base", str(work / "inprocess" / "base")]  # one base for both engines
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            sites = len(list((out / "federation").glob("*/manifest.csv"))) or 4
            parallel = 1 if engine == "inprocess" else min(sites, available_cores())
            for strategy in args.strategies.split(","):
                cases[f"{strategy}, {engine}"] = (out / "runs" / "all" / strategy / "seed-0" / "results.json", parallel)
    table, record = [], {}
    for name, (results, parallel) in cases.items():
        rows = round_shares(results, parallel)
        record[name] = {"parallel": parallel, "rounds": rows, **summarize(rows)}
        for part in ("round_1", "later_rounds"):
            s = record[name][part]
            table.append([name, part.replace("_", " "), s["rounds"], s["wall_s"], s["site_s"], s["compute_s"],
                          f"{s['share_of_site_time']:.0%}", f"{s['share_of_round']:.0%}"])
    print(format_table(["run", "rounds", "n", "wall s", "sites s", "compute s", "compute/sites", "compute/round"],
                       table, digits=2))
    if not args.runs:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({**machine_info(), "cases": record}, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
