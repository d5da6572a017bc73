"""Benchmark 1: training-step cost of the patient-adaptive LoRA.

Same model and batch, four trainable setups, one run:
  (a) no adapter, full fine-tune (train.base = trainable, no LoRA)
  (b) shared LoRA only (frozen base)
  (c) shared + per-sample patient LoRA (frozen base), one shared hypernetwork
  (d) as (c) with the paper's per-layer hypernetwork heads
Reports seconds per step (median of timed steps after warm-up), c/b and d/b.
Writes benchmarks/results/lora_step_cost.json.

    python benchmarks/lora_step_cost.py [--hidden 128] [--batch 16] [--steps 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from data_adapters.records import read_manifest
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import load_config
from fedtar.data.site import load_site
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import build_model
from fedtar.generator.parameters import size_report
from fedtar.learning.training import make_optimizer
from fedtar.operations.tables import format_table

SETUPS = {
    "a_full_finetune": {"train.base": "trainable", "lora.shared": False, "lora.patient": False},
    "b_shared_lora": {"train.base": "frozen", "lora.shared": True, "lora.patient": False},
    "c_shared_plus_patient": {"train.base": "frozen", "lora.shared": True, "lora.patient": True,
                              "lora.hypernetwork": "shared"},
    "d_patient_per_layer_heads": {"train.base": "frozen", "lora.shared": True, "lora.patient": True,
                                  "lora.hypernetwork": "per-layer"},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="benchmarks/results/lora_step_cost.json")
    args = p.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        manifests = generate_federation(tmp, SyntheticConfig(sites=1, patients=12, visits=4, seed=1))
        results, rows = {}, []
        for name, overrides in SETUPS.items():
            cfg = load_config(overrides={"model.hidden_size": args.hidden, "model.layers": args.layers,
                                         "model.heads": args.heads, "train.device": args.device, **overrides})
            tok = ReportTokenizer.train(r.findings for r in read_manifest(manifests[0]).records)
            model = build_model(cfg, tok).to(args.device)
            site = load_site(manifests[0], tok, cfg)
            batch = next(site.exams.batches(args.batch)).to(args.device)
            optimizer = make_optimizer(model, cfg.train)
            model.train()
            times = []
            for step in range(args.warmup + args.steps):
                start = time.perf_counter()
                loss = model(batch, batch.q)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                if step >= args.warmup:
                    times.append(time.perf_counter() - start)
            sizes = size_report(model)
            results[name] = {"seconds_per_step": statistics.median(times),
                             "trainable_params": sizes["travelling_params"],
                             "total_params": sizes["total_params"]}
            rows.append([name, statistics.median(times) * 1000, int(sizes["travelling_params"])])
    ratio = results["c_shared_plus_patient"]["seconds_per_step"] / results["b_shared_lora"]["seconds_per_step"]
    print(format_table(["setup", "ms/step", "trainable"], rows, digits=1))
    per_layer = results["d_patient_per_layer_heads"]["seconds_per_step"] / results["b_shared_lora"]["seconds_per_step"]
    print(f"c/b = {ratio:.3f} (goal <= 1.15); d/b = {per_layer:.3f}")
    meta = {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "batch": args.batch,
            "device": args.device, "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
            "date": time.strftime("%Y-%m-%d")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"config": meta, "results": results, "c_over_b": ratio,
                                          "d_over_b": per_layer}, indent=2))


if __name__ == "__main__":
    main()
