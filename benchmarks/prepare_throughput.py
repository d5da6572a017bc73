"""Images per second of `fedtar prepare mimic-cxr` at 1, 2, ... worker processes.

Writes a MIMIC-CXR-JPG rehearsal archive (data_adapters/mimic_rehearsal.py) once, then
prepares it into a fresh folder per worker count (decode JPG, resize, re-encode PNG: the
cost of a real prepare) and times the whole call, table reading and manifests included.
Checks that every worker count wrote the same manifests. Prints a table and writes
benchmarks/results/prepare_throughput.json.

    python benchmarks/prepare_throughput.py [--studies 2000 --image-size 512 --workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from machine_info import machine_info

from data_adapters.deid import Pseudonymizer
from data_adapters.mimic_cxr import MimicOptions, prepare_mimic_cxr
from data_adapters.mimic_rehearsal import RehearsalConfig, write_rehearsal
from data_adapters.study_jobs import available_cores
from fedtar.operations.tables import format_table

RESULTS = Path(__file__).parent / "results" / "prepare_throughput.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=512, help="rehearsal JPG height")
    parser.add_argument("--out-size", type=int, default=384, help="prepare --image-size (the paper's 384)")
    parser.add_argument("--workers", default=f"1,2{f',{available_cores()}' if available_cores() > 2 else ''}")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs per worker count")
    parser.add_argument("--work", help="folder for the archive and outputs (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="prepare_throughput_"))
    archive_dir = work / "archive"
    t0 = time.perf_counter()
    archive = write_rehearsal(archive_dir, RehearsalConfig(studies=args.studies, image_size=args.image_size))
    generate_s = time.perf_counter() - t0
    key = Pseudonymizer(b"benchmark-secret-0123456789abcdef")
    rows, runs, manifests = [], [], {}
    for n in [int(w) for w in args.workers.split(",")]:
        best = float("inf")
        for r in range(args.repeats):
            out = work / f"prepared-{n}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            prepared = prepare_mimic_cxr(archive.root, archive.patients, out, key,
                                         MimicOptions(sites=4, image_size=args.out_size, workers=n))
            best = min(best, time.perf_counter() - t0)
            manifests[n] = [m.read_bytes() for m in prepared.manifests]
        images = sum(1 for _ in (work / f"prepared-{n}-0").rglob("*.png"))
        runs.append({"workers": n, "seconds": round(best, 2), "images": images,
                     "images_per_s": round(images / best, 1)})
    base = runs[0]["images_per_s"]
    for run in runs:
        run["speedup"] = round(run["images_per_s"] / base, 2)
        rows.append([run["workers"], run["images"], run["seconds"], run["images_per_s"], run["speedup"]])
    identical = all(m == manifests[runs[0]["workers"]] for m in manifests.values())
    print(f"Rehearsal archive: {archive.studies} studies, {archive.images} JPGs of {args.image_size} px "
          f"(written in {generate_s:.1f} s); prepare to {args.out_size} px PNGs, frontal view, 4 sites; "
          f"{available_cores()} cores available")
    print(format_table(["workers", "images", "seconds", "images/s", "speedup"], rows))
    print(f"manifests identical at every worker count: {identical}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "studies": archive.studies, "archive_images": archive.images, "image_size": args.image_size,
        "out_size": args.out_size, "runs": runs, "manifests_identical": identical, **machine_info(),
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
