"""Peak memory of training at 384 px as a site grows, and loader throughput by worker count.

For each exam count (default 2k and 20k) a fresh process loads one site (fedtar.data.site.load_site:
header check, GMM, token ids), builds a small model and runs a few training steps at
data.image_size 384; another does the same for the centralized reference (the union of 4
sites of N/4 exams, fedtar.data.exams.concat_exams). Each reports its peak RSS. Images are 384 px
8-bit PNGs written here: `--unique` distinct ones, hard-linked under every exam's own name
(what a process holds does not depend on the pixels). Throughput: images read per second by
one pass of batches over a site with data.cache_mib 0 (every image decoded, a site far larger
than its cache) at data.workers 0 and 2. Prints a table, writes
benchmarks/results/streaming_memory.json.

    nice -n 10 python benchmarks/streaming_memory.py [--exams 2000,20000 --steps 4 --workers 0,2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from data_adapters.records import ExamRecord, write_manifest
from fedtar.operations.tables import format_table

RESULTS = Path(__file__).parent / "results" / "streaming_memory.json"
WORDS = ("heart size normal lungs clear no effusion pneumothorax mild opacity left right lower lobe stable "
         "compared prior small pleural atelectasis tube terminates above carina unchanged increased").split()


def write_images(folder: Path, unique: int, size: int) -> list[Path]:
    """`unique` smooth 8-bit radiograph-sized PNGs (they compress like real ones, unlike noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(unique):
        img = 127 + 60 * np.sin(6 * x + i) * np.cos(4 * y + 0.3 * i) + 20 * np.sin(40 * x * y + i)
        paths.append(folder / f"source-{i}.png")
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(paths[-1], compress_level=1)
    return paths


def write_site(folder: Path, name: str, exams: int, sources: list[Path], visits: int = 5) -> Path:
    """A manifest of `exams` exams (patients of `visits` visits), each image a hard link of its own."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name) + exams)
    records = []
    for k in range(exams):
        patient, visit = divmod(k, visits)
        image = folder / "images" / f"{name}-{k}.png"
        if not image.exists():
            os.link(sources[k % len(sources)], image)
        text = " ".join(rng.choice(WORDS, size=40)) + "."
        records.append(ExamRecord(
            site_id=name, patient_id=f"{name}-p{patient}", visit_index=visit + 1,
            study_date=dt.date(2010, 1, 1) + dt.timedelta(days=200 * visit), days_since_prior=200 if visit else 0,
            age=30.0 + patient % 50, sex="MF"[patient % 2], image_paths=[image], findings=text, impression=text,
            split="train" if patient % 10 < 8 else ("validate" if patient % 10 == 8 else "test")))
    write_manifest(folder / "manifest.csv", records)
    return folder / "manifest.csv"


def child(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process; returns its figures."""
    import torch

    from fedtar.config import load_config
    from fedtar.data.exams import concat_exams
    from fedtar.data.site import load_site
    from fedtar.data.tokenizer import ReportTokenizer
    from fedtar.generator.model import build_model
    from fedtar.learning.training import train_local

    torch.manual_seed(0)
    manifests = [Path(m) for m in args.manifests.split(",")]
    cfg = load_config(overrides={"data.image_size": args.image_size, "data.batch_size": args.batch,
                                 "data.cache_mib": args.cache_mib, "data.workers": args.child_workers,
                                 "model.patch_size": 32, "train.device": "cpu"})
    # The site's vocabulary, as a base would bring it (a site never trains a tokenizer on its data;
    # reading the whole manifest here once would add its records to the peak being measured).
    tok = ReportTokenizer.train([" ".join(WORDS) + "."] * 5)
    start = time.perf_counter()
    sites = [load_site(m, tok, cfg) for m in manifests]
    load_s = time.perf_counter() - start
    train = concat_exams([s.split("train") for s in sites]) if len(sites) > 1 else sites[0].split("train")
    out = {"exams": sum(len(s.exams) for s in sites), "load_s": load_s}
    if args.child == "train":
        model = build_model(cfg, tok)
        start = time.perf_counter()
        stats = train_local(model, train, cfg.train, args.batch, max_steps=args.steps)
        out.update(train_s=time.perf_counter() - start, steps=stats.steps)
    else:  # throughput: one pass of batches, images only
        start = time.perf_counter()
        n = sum(len(b.index) for b in train.batches(args.batch))
        out.update(samples_per_s=n / (time.perf_counter() - start), samples=n)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_child(kind: str, manifests: list[Path], args: argparse.Namespace, workers: int = 0,
              cache_mib: float | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--manifests", ",".join(map(str, manifests)),
           "--image-size", str(args.image_size), "--batch", str(args.batch), "--steps", str(args.steps),
           "--cache-mib", str(args.cache_mib if cache_mib is None else cache_mib), "--child-workers", str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exams", default="2000,20000")
    p.add_argument("--sites", type=int, default=4, help="centralized reference: the union of this many sites")
    p.add_argument("--image-size", type=int, default=384)
    p.add_argument("--unique", type=int, default=500, help="distinct PNGs written (hard-linked per exam)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cache-mib", type=float, default=256.0)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--throughput-exams", type=int, default=400)
    p.add_argument("--work", help="folder for the images and manifests (default: a temporary one)")
    p.add_argument("--child", choices=("train", "throughput"), help=argparse.SUPPRESS)
    p.add_argument("--manifests", help=argparse.SUPPRESS)
    p.add_argument("--child-workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        root = Path(tmp)
        sources = write_images(root / "sources", args.unique, args.image_size)
        results: dict[str, dict] = {"site": {}, "central": {}, "throughput": {}}
        rows = []
        for n in [int(x) for x in args.exams.split(",")]:
            site = write_site(root / f"site-{n}", "site", n, sources)
            results["site"][n] = run_child("train", [site], args)
            parts = [write_site(root / f"central-{n}-{k}", f"c{k}", n // args.sites, sources)
                     for k in range(args.sites)]
            results["central"][n] = run_child("train", parts, args)
            for kind in ("site", "central"):
                r = results[kind][n]
                rows.append([kind, r["exams"], r["peak_rss_mib"], r["load_s"], r["train_s"],
                             r["exams"] * args.image_size ** 2 * 4 / 2**20])
        small, large = (int(x) for x in args.exams.split(",")[:2])
        growth = {k: results[k][large]["peak_rss_mib"] / results[k][small]["peak_rss_mib"] - 1 for k in ("site", "central")}
        print(format_table(["run", "exams", "peak RSS MiB", "load s", f"{args.steps} steps s", "float32 pre-load MiB"],
                           rows, digits=1))
        print("peak RSS growth from %d to %d exams: site %+.1f%%, central %+.1f%% (goal < 10%%)"
              % (small, large, 100 * growth["site"], 100 * growth["central"]))
        site = write_site(root / "throughput", "site", args.throughput_exams, sources)
        trows = []
        for w in [int(x) for x in args.workers.split(",")]:
            r = results["throughput"][w] = run_child("throughput", [site], args, workers=w, cache_mib=0)
            trows.append([w, r["samples"], r["samples_per_s"]])
        print(format_table(["data.workers", "images", "images/s (cache_mib 0)"], trows, digits=1))
    meta = {"image_size": args.image_size, "batch": args.batch, "steps": args.steps, "cache_mib": args.cache_mib,
            "sites": args.sites, "unique_images": args.unique, "cores": os.cpu_count(),
            "load_average": os.getloadavg()[0], "machine": platform.platform(), "date": time.strftime("%Y-%m-%d"),
            "command": "nice -n 10 python benchmarks/streaming_memory.py " + " ".join(
                a for a in sys.argv[1:] if a != "--work" and a != args.work)}  # where temp files went: no figure
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"config": meta, "results": results, "growth": growth}, indent=2))


if __name__ == "__main__":
    main()
