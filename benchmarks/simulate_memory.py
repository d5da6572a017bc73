"""Peak memory of `fedtar simulate` as the sites grow tenfold, with the caches pinned.

The measurement issue 21 states: 2 synthetic sites read at 256 px, one round of FedAvg on the
in-process engine, `data.cache_mib = 16` and `client.runtime_cache_mib = 16`, at 200 and at 2,000
exams (20 and 200 patients per site, 5 visits each). The federations are written and the base is
pretrained by commands of their own first, so the figure is the simulation's alone: the summed RSS
of the `fedtar simulate` process tree, sampled every 0.2 s (benchmarks/rehearsal_scale.py's
run_stage). Evaluation generates every test report (METEOR off: its Java process is not ours).

    python benchmarks/simulate_memory.py [--patients 20,200] [--work DIR]

Writes benchmarks/results/simulate_memory.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from machine_info import machine_info
from rehearsal_scale import run_stage

from fedtar.generator.model import MODEL_FILE
from fedtar.operations.tables import format_table

RESULTS = Path(__file__).parent / "results" / "simulate_memory.json"
SETTINGS = {"data.image_size": 256, "data.cache_mib": 16, "client.runtime_cache_mib": 16,
            "client.eval_meteor": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", default="20,200", help="patients per site (5 exams each, 2 sites)")
    parser.add_argument("--work", help="folder for the federations and runs (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="simulate_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    fedtar = [sys.executable, "-m", "fedtar.cli"]
    sets = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={v}")]
    base = work / "base"
    if not (base / MODEL_FILE).is_file():  # a saved base: pretrained once per work folder
        run_stage([*fedtar, "pretrain", "--out", str(base), "--epochs", "1", *sets], work / "pretrain.log")
    results = {}
    for patients in (int(p) for p in args.patients.split(",")):
        data, out = work / f"federation-{patients}", work / f"run-{patients}"
        if not data.is_dir():
            run_stage([*fedtar, "synth", "--out", str(data), "--sites", "2", "--patients", str(patients),
                       "--visits", "5"], work / f"synth-{patients}.log")
        results[patients * 2 * 5] = run_stage(
            [*fedtar, "simulate", "--out", str(out), "--data", str(data), "--base", str(base), "--rounds", "1",
             "--strategies", "fedavg", "--engine", "inprocess", "--overwrite", *sets], work / f"simulate-{patients}.log")
        print(f"{patients * 10} exams: {results[patients * 10]}", flush=True)
    rows = [[exams, r["seconds"], r["peak_rss_mib"]] for exams, r in results.items()]
    print(format_table(["exams", "seconds", "peak RSS MiB (process tree)"], rows, digits=1))
    sizes = sorted(results)
    growth = results[sizes[-1]]["peak_rss_mib"] / results[sizes[0]]["peak_rss_mib"]
    print(f"peak RSS x{growth:.3f} from {sizes[0]} to {sizes[-1]} exams")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"settings": SETTINGS, **machine_info(), "results": results,
                                   "growth": round(growth, 3)}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
