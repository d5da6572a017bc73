"""Benchmark 2: what each site uploads, per round and per run, against the model's size.

FedTAR uploads one travelling state per visit index (T per round); pooled
baselines upload one. Sizes come from `fedtar.generator.parameters` (the one list of
travelling tensors, and the bytes as uploaded in `federation.transport_dtype`)
for the demo model and for the paper's backbone shapes (CvT-21 + DistilGPT2
built from configs with random weights: nothing is downloaded), with the
decoder as DistilGPT2 is published (no cross-attention: new layers that train
and travel) and with pretrained cross-attention (the CvT2DistilGPT2 layout),
per-layer and shared hypernetworks, float32 and bfloat16 transport. LoRA adapts the library default's
targets (attention projections: fedtar.generator.adapters.DEFAULT_TARGETS).
Writes benchmarks/results/communication.json. MB = 10^6 bytes.

    python benchmarks/communication.py [--visits 5] [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from paper_model import paper_backbones, paper_model_from  # benchmarks/paper_model.py (run from the repo root)

from fedtar.config import load_config
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import build_model
from fedtar.generator.parameters import TRANSPORT_DTYPES, size_report, travelling_specs
from fedtar.operations.tables import format_table

# Adapter variants: the paper's per-layer heads, the shared generator at the default width, and at half width.
VARIANTS = {"per-layer": {"lora.hypernetwork": "per-layer"}, "shared": {"lora.hypernetwork": "shared"},
            "shared, hyper_dim 8": {"lora.hypernetwork": "shared", "lora.hyper_dim": 8}}
DECODERS = {"new cross-attention (DistilGPT2)": False, "pretrained cross-attention (CvT2DistilGPT2)": True}


def breakdown(model) -> dict[str, int]:
    """Travelling parameters by kind."""
    out = {"shared LoRA": 0, "hypernetwork": 0, "patient projection": 0, "change head": 0, "new base tensors": 0}
    for s in travelling_specs(model):
        parts = s.name.split(".")
        kind = ("hypernetwork" if "hypernetwork" in parts or "hyper_A" in parts or "hyper_B" in parts else
                "shared LoRA" if "lora_A" in parts or "lora_B" in parts else
                "patient projection" if "patient_proj" in parts else
                "change head" if "change_head" in parts else "new base tensors")
        out[kind] += s.numel
    return out


def measure(model, case: str, hyper: str, visits: int, rounds: int) -> list[dict]:
    parts = breakdown(model)
    out = []
    for transport in TRANSPORT_DTYPES:
        sizes = size_report(model, transport)
        out.append({"model": case, "hypernetwork": hyper, "transport": transport, **sizes, "by_kind": parts,
                    "fedtar_bytes_per_site_round": sizes["travelling_bytes"] * visits,
                    "fedtar_bytes_per_site_run": sizes["travelling_bytes"] * visits * rounds,
                    "fedavg_bytes_per_site_round": sizes["travelling_bytes"]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--visits", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/communication.json")
    args = p.parse_args()
    results = []
    tok = ReportTokenizer.train(["there is a small left pleural effusion ."])
    for hyper, overrides in VARIANTS.items():
        model = build_model(load_config(overrides=overrides), tok)
        results += measure(model, "demo", hyper, args.visits, args.rounds)
    for case, cross in DECODERS.items():
        with tempfile.TemporaryDirectory() as tmp:
            paper_tok = paper_backbones(tmp, cross_attention=cross)
            for hyper, overrides in VARIANTS.items():
                model = paper_model_from(tmp, paper_tok, **overrides)
                results += measure(model, f"paper, {case}", hyper, args.visits, args.rounds)
                del model
    rows = [[r["model"], r["hypernetwork"], r["transport"], int(r["travelling_params"]), 100 * r["share"],
             r["by_kind"]["hypernetwork"] / 1e6, r["by_kind"]["change head"] / 1e6, r["by_kind"]["new base tensors"] / 1e6,
             r["travelling_bytes"] / 1e6, r["fedtar_bytes_per_site_round"] / 1e6] for r in results]
    print(format_table(["model", "hypernetwork", "transport", "travelling params", "% of model", "hypernet (M)",
                        "change head (M)", "new base (M)", "MB / state", f"FedTAR MB / site / round ({args.visits} visits)"],
                       rows, digits=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "visits": args.visits,
                                          "rounds": args.rounds, "mb": 1e6, "results": results}, indent=2))


if __name__ == "__main__":
    main()
