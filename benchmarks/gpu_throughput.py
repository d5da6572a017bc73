"""Benchmark 5 (for a machine with an NVIDIA GPU): training throughput at the paper's backbone size.

CvT-21 (384 px) + DistilGPT2 shapes with random weights (benchmarks/paper_model.py,
nothing downloaded), bf16 autocast, one training step = forward + backward +
AdamW. Reports samples/s and achieved TFLOP/s (FLOPs counted by
torch.utils.flop_counter on one step) with the patient LoRA on and with the
shared LoRA only. Writes benchmarks/results/gpu_throughput.json.

    python benchmarks/gpu_throughput.py --device cuda [--batch 32] [--steps 20]
    python benchmarks/gpu_throughput.py --device cpu --size demo --batch 4 --steps 2   # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from paper_model import paper_model  # benchmarks/paper_model.py (scripts run from the repo root)
from torch.utils.flop_counter import FlopCounterMode

from fedtar.config import load_config
from fedtar.data.exams import Batch
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import build_model, q_dim
from fedtar.operations.tables import format_table


def synthetic_batch(batch: int, channels: int, size: int, tokens: int, vocab: int, q_dim: int,
                    device: str) -> Batch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch, tokens), generator=g)
    ids[:, 0] = 1
    return Batch(images=torch.rand(batch, channels, size, size, generator=g), input_ids=ids,
                 profiles=torch.zeros(batch, 3), q=torch.softmax(torch.randn(batch, q_dim, generator=g), -1),
                 visit_index=torch.full((batch,), 2), has_prior=torch.ones(batch, dtype=torch.bool),
                 prior_images=torch.rand(batch, channels, size, size, generator=g), prior_ids=ids.clone(),
                 labels=torch.zeros(batch, 0, dtype=torch.long), index=torch.arange(batch),
                 change=torch.full((batch, 14), -100, dtype=torch.long)).to(device)


def train_step(model, optimizer, batch: Batch, autocast) -> None:
    with autocast:
        loss = model(batch, batch.q)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def build(size: str, patient: bool, folder: Path):
    overrides = {"lora.patient": patient}
    if size == "paper":
        return paper_model(folder, **overrides)
    tok = ReportTokenizer.train([" ".join(f"w{i}" for i in range(200))])
    return build_model(load_config(overrides=overrides), tok), tok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", choices=("paper", "demo"), default="paper")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=60, help="report length in tokens")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/gpu_throughput.json")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    rows, results = [], {}
    for patient in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(0)
            model, tok = build(args.size, patient, Path(tmp))
        model = model.to(args.device).train()
        cfg = model.cfg
        batch = synthetic_batch(args.batch, cfg.model.image_channels, cfg.data.image_size, args.tokens,
                                tok.vocab_size, q_dim(cfg), args.device)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
        # (an autocast context object can be entered again for every step)

        with FlopCounterMode(display=False) as counter:
            train_step(model, optimizer, batch, autocast)
        flops = counter.get_total_flops()
        times = []
        for i in range(args.warmup + args.steps):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            train_step(model, optimizer, batch, autocast)
            if cuda:
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        name = "shared + patient LoRA" if patient else "shared LoRA only"
        results[name] = {"seconds_per_step": seconds, "samples_per_s": args.batch / seconds,
                         "tflops_per_s": flops / seconds / 1e12, "flops_per_step": flops,
                         "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
        rows.append([name, args.batch / seconds, flops / seconds / 1e12, seconds * 1000])
        del model, optimizer
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    print(format_table(["setup", "samples/s", "TFLOP/s", "ms/step"], rows, digits=2))
    meta = {"device": torch.cuda.get_device_name() if cuda else "cpu", "size": args.size, "batch": args.batch,
            "tokens": args.tokens, "bf16": cuda, "date": time.strftime("%Y-%m-%d")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"config": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
