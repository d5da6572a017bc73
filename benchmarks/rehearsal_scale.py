"""The MIMIC walkthrough at MIMIC's size without MIMIC: wall time, peak memory, output and time per item per stage.

For each size it runs the docs' MIMIC walkthrough (docs/guides/mimic-cxr.md) as a user would, one
`fedtar` command per stage, on a rehearsal archive in the MIMIC-CXR-JPG layout
(data_adapters/mimic_rehearsal.py):

    synth-mimic -> prepare mimic-cxr (4 sites, all cores) -> pretrain --data (a short base)
    -> simulate (FedTAR, 2 rounds) -> evaluate (every test report generated)

and records for each stage its wall time, the peak of the summed RSS of its process tree (workers
included, sampled every 0.2 s), the files and bytes it wrote, its items (studies for synth-mimic and
prepare, the pool's exams for pretrain, the sites' exams for simulate, the test exams for evaluate)
and the seconds per item, so a stage that is not linear in its items shows between two sizes.
Training is capped by train.max_steps (the model is small: the point is the data path at size, not
learning). With `--mimic-counts` the archive has MIMIC-CXR-JPG's proportions (its official split, 1.66
images per study, 3.5 studies per subject; 377k images at 227,835 studies).

Stages are resumable: each one's figures are kept in WORK/studies-N/stages.json as it ends, and a
rerun with the same --work skips the stages recorded there (a stage cut short is run again from a
fresh output folder). Prints a table and writes benchmarks/results/rehearsal_scale.json (or --results).

    python benchmarks/rehearsal_scale.py [--studies 2000,20000] [--work DIR]
    python benchmarks/rehearsal_scale.py --mimic-counts --studies 22784,227835 --jpg-size 128 --png-size 128 \
        --work /data/rehearsal --results benchmarks/results/rehearsal_full_count.json
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
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


def written(path: Path) -> tuple[int, int]:
    """Files and bytes under a path (a file counts as one)."""
    if path.is_file():
        return 1, path.stat().st_size
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.stat(os.path.join(folder, name)).st_size
    return files, size


def manifest_rows(prepared: Path, split: str | None = None) -> int:
    """Exams in the prepared sites' manifests (of one split, or all)."""
    total = 0
    for manifest in prepared.glob("*/manifest.csv"):
        with manifest.open(newline="", encoding="utf-8-sig") as f:
            total += sum(1 for row in csv.DictReader(f) if split is None or row.get("split") == split)
    return total


def archive_studies(archive: Path) -> int:
    with gzip.open(archive / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz", "rt") as f:
        return sum(1 for _ in f) - 1


def walkthrough(work: Path, studies: int, args: argparse.Namespace) -> dict[str, dict]:
    fedtar = [sys.executable, "-m", "fedtar.cli"]

    def sets(**changes: object) -> list[str]:
        return [a for k, v in {**SETTINGS, **changes}.items() for a in ("--set", f"{k}={v}")]

    archive, prepared, base, sim = work / "archive", work / "prepared", work / "base", work / "sim"
    generated, secret = work / "generated.csv", work / "secret"
    counts = ["--mimic-counts"] if args.mimic_counts else []
    # name: (command, what it writes, its items once done)
    stages = {
        "synth-mimic": ([*fedtar, "synth-mimic", "--out", str(archive), "--studies", str(studies), *counts,
                         "--image-size", str(args.jpg_size), "--no-progress"],
                        [archive], lambda: archive_studies(archive)),
        "prepare": ([*fedtar, "prepare", "mimic-cxr", "--root", str(archive / "mimic-cxr-jpg"),
                     "--patients", str(archive / "mimiciv" / "hosp" / "patients.csv.gz"), "--out", str(prepared),
                     "--sites", "4", "--image-size", str(args.png_size), "--secret", str(secret), "--no-progress"],
                    [prepared], lambda: archive_studies(archive)),
        "pretrain": ([*fedtar, "pretrain", "--out", str(base), "--data", str(prepared), "--epochs", "1",
                      *sets(**{"train.max_steps": 40})],
                     [base, work / "base-tensorboard"], lambda: manifest_rows(prepared, "train")),
        "simulate": ([*fedtar, "simulate", "--out", str(sim), "--data", str(prepared), "--base", str(base),
                      "--rounds", "2", "--engine", "inprocess", "--strategies", "fedtar", *sets()],
                     [sim], lambda: manifest_rows(prepared)),
        "evaluate": ([*fedtar, "evaluate", "--model", str(sim / "runs" / "all" / "fedtar" / "seed-0"),
                      "--data", str(prepared), "--no-meteor", "--out", str(generated)],
                     [generated], lambda: manifest_rows(prepared, "test")),
    }
    record = work / "stages.json"
    results = json.loads(record.read_text()) if record.is_file() else {}
    for name, (cmd, outputs, items) in stages.items():
        if name in results:
            print(f"  {studies} studies, {name}: recorded before, kept: {results[name]}", flush=True)
            continue
        for path in outputs:  # a stage cut short starts again from nothing
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        figures = run_stage(cmd, work / f"{name}.log")
        files, size = (sum(x) for x in zip(*(written(p) for p in outputs if p.exists()))) \
            if any(p.exists() for p in outputs) else (0, 0)
        n = items()
        results[name] = {**figures, "files": files, "bytes": size, "items": n,
                         "ms_per_item": round(1000 * figures["seconds"] / max(n, 1), 3)}
        record.write_text(json.dumps(results, indent=2) + "\n")
        print(f"  {studies} studies, {name}: {results[name]}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", default="2000,20000")
    parser.add_argument("--mimic-counts", action="store_true", help="synth-mimic --mimic-counts (MIMIC's proportions)")
    parser.add_argument("--jpg-size", type=int, default=512, help="rehearsal JPG height")
    parser.add_argument("--png-size", type=int, default=384, help="prepare --image-size (the paper's 384)")
    parser.add_argument("--work", help="folder for archives and runs, kept for a rerun to resume "
                                       "(default: a temporary one, removed)")
    parser.add_argument("--keep-archive", action="store_true", help="keep each size's archive once prepared")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    root = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rehearsal_scale_"))
    sizes = [int(s) for s in args.studies.split(",")]
    results = {}
    for n in sizes:
        work = root / f"studies-{n}"
        work.mkdir(parents=True, exist_ok=True)
        results[n] = walkthrough(work, n, args)
        if not args.keep_archive:
            shutil.rmtree(work / "archive", ignore_errors=True)  # the largest part; logs and runs stay with --work
    rows = [[n, stage, r["seconds"], r["peak_rss_mib"], r["files"], r["bytes"] / 2**20, r["items"], r["ms_per_item"]]
            for n, stages in results.items() for stage, r in stages.items()]
    print(format_table(["studies", "stage", "seconds", "peak RSS MiB", "files", "MiB written", "items", "ms / item"],
                       rows, digits=1))
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for stage in results[small]:
            a, b = results[small][stage], results[large][stage]
            print(f"{stage}: peak RSS {b['peak_rss_mib'] / a['peak_rss_mib'] - 1:+.1%}, time per item "
                  f"x{b['ms_per_item'] / max(a['ms_per_item'], 1e-9):.2f} from {small} to {large} studies")
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "settings": SETTINGS, "mimic_counts": args.mimic_counts, "jpg_size": args.jpg_size,
        "png_size": args.png_size, **machine_info(), "results": results,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    if not args.work:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
