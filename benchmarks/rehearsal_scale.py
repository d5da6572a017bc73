"""The MIMIC walkthrough at MIMIC-like size without MIMIC: wall time and peak memory per stage.

For each size (default 2,000 and 20,000 studies) it runs the README's MIMIC walkthrough as a user
would, one `fedtar` command per stage, on a rehearsal archive in the MIMIC-CXR-JPG layout
(data_adapters/mimic_rehearsal.py):

    synth-mimic (512 px JPGs) -> prepare mimic-cxr (384 px, 4 sites, all cores)
    -> pretrain --data (a short base) -> simulate (FedTAR, 2 rounds) -> evaluate

and records each stage's wall time and the peak of the summed RSS of its process tree (workers
included), sampled every 0.2 s. Training is capped by train.max_steps (the model is small and
the point is the data path at size, not learning); evaluation generates every test report.
Prints a table and writes benchmarks/results/rehearsal_scale.json.

    python benchmarks/rehearsal_scale.py [--studies 2000,20000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from machine_info import machine_info

from fedtar.operations.tables import format_table

RESULTS = Path(__file__).parent / "results" / "rehearsal_scale.json"
# A small model reading the 384 px PNGs at 128 px; steps capped per training call.
SETTINGS = {"model.hidden_size": 64, "model.layers": 2, "model.heads": 4, "model.patch_size": 16,
            "data.image_size": 128, "data.max_tokens": 64, "lora.hyper_dim": 8, "train.lr": 1e-3,
            "train.max_steps": 10, "client.local_epochs": 1, "client.eval_meteor": False}


def tree_rss(proc: psutil.Process) -> int:
    """Summed RSS of a process and its descendants (bytes); processes that just ended count 0."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_stage(cmd: list[str], log: Path) -> dict:
    """Run one command, sampling its process tree's RSS; returns wall seconds and peak MiB."""
    peak = 0
    with log.open("w") as out:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        proc = psutil.Process(child.pid)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(proc))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = child.wait()
        done.set()
        sampler.join()
        wall = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); its log: {log}")
    return {"seconds": round(wall, 1), "peak_rss_mib": round(peak / 2**20, 1)}


def walkthrough(work: Path, studies: int, args: argparse.Namespace) -> dict[str, dict]:
    fedtar = [sys.executable, "-m", "fedtar.cli"]

    def sets(**changes: object) -> list[str]:
        return [a for k, v in {**SETTINGS, **changes}.items() for a in ("--set", f"{k}={v}")]

    archive, prepared, base, sim = work / "archive", work / "prepared", work / "base", work / "sim"
    secret = work / "secret"
    stages = {
        "synth-mimic": [*fedtar, "synth-mimic", "--out", str(archive), "--studies", str(studies),
                        "--image-size", str(args.jpg_size), "--no-progress"],
        "prepare": [*fedtar, "prepare", "mimic-cxr", "--root", str(archive / "mimic-cxr-jpg"),
                    "--patients", str(archive / "mimiciv" / "hosp" / "patients.csv.gz"), "--out", str(prepared),
                    "--sites", "4", "--image-size", str(args.png_size), "--secret", str(secret), "--no-progress"],
        "pretrain": [*fedtar, "pretrain", "--out", str(base), "--data", str(prepared), "--epochs", "1",
                     *sets(**{"train.max_steps": 40})],
        "simulate": [*fedtar, "simulate", "--out", str(sim), "--data", str(prepared), "--base", str(base),
                     "--rounds", "2", "--engine", "inprocess", "--strategies", "fedtar", *sets()],
        "evaluate": [*fedtar, "evaluate", "--model", str(sim / "runs" / "all" / "fedtar" / "seed-0"),
                     "--data", str(prepared), "--no-meteor", "--out", str(work / "generated.csv")],
    }
    results = {}
    for name, cmd in stages.items():
        results[name] = run_stage(cmd, work / f"{name}.log")
        print(f"  {studies} studies, {name}: {results[name]}", flush=True)
    results["prepare"]["images"] = sum(1 for _ in prepared.rglob("*.png"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default="2000,20000")
    parser.add_argument("--jpg-size", type=int, default=512, help="rehearsal JPG height")
    parser.add_argument("--png-size", type=int, default=384, help="prepare --image-size (the paper's 384)")
    parser.add_argument("--work", help="folder for archives and runs (default: a temporary one, removed)")
    args = parser.parse_args()
    root = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rehearsal_scale_"))
    sizes = [int(s) for s in args.studies.split(",")]
    results = {}
    for n in sizes:
        work = root / f"studies-{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        results[n] = walkthrough(work, n, args)
        shutil.rmtree(work / "archive", ignore_errors=True)  # the largest part; logs and runs stay with --work
    rows = [[n, stage, r["seconds"], r["peak_rss_mib"]] for n, stages in results.items() for stage, r in stages.items()]
    print(format_table(["studies", "stage", "seconds", "peak RSS MiB (process tree)"], rows, digits=1))
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for stage in results[small]:
            growth = results[large][stage]["peak_rss_mib"] / results[small][stage]["peak_rss_mib"] - 1
            print(f"{stage}: peak RSS {growth:+.1%} from {small} to {large} studies")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "settings": SETTINGS, "jpg_size": args.jpg_size, "png_size": args.png_size, **machine_info(),
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if not args.work:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
