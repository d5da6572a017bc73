"""Issue 21: what the simulation holds does not follow a split's exams.

Evaluation (the sites' `evaluate_site`: generation and loss; the centralized reference and
`fedtar evaluate` share `evaluate_model`) batches by `data.batch_size`, as training does. It used
a fixed 64, so a test split under 64 exams per site ran in smaller batches than a larger one: the
peak RSS of `fedtar simulate` at 256 px grew 1,067 -> 1,524 MiB from 200 to 1,000 exams (2 sites,
1 FedAvg round, default model), some 10 MiB of activations per extra batch row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Run in a fresh process: peak RSS there is this measurement's, not the test session's.
CHILD = r"""
import json, sys, threading, time
from pathlib import Path
import psutil, torch
torch.set_num_threads(1)
from clients.site_runtime import SiteRuntime, evaluate_site
from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import load_config
from fedtar.generator.model import build_model
from fedtar.generator.parameters import get_travelling_state
from fedtar.data.site import load_site
from fedtar.data.tokenizer import ReportTokenizer

out, size, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cfg = load_config(overrides={"model.hidden_size": 32, "model.layers": 1, "model.heads": 2, "lora.hyper_dim": 4,
                             "demographics.gmm_components": 2, "data.image_size": size, "data.batch_size": batch,
                             "data.max_tokens": 16, "data.cache_mib": 0, "client.eval_meteor": False,
                             "train.device": "cpu"})
manifests = {name: generate_federation(out / name, SyntheticConfig(sites=1, patients=patients, visits=2,
                                                                   image_size=size, test_fraction=0.5, seed=1))[0]
             for name, patients in (("small", 4), ("large", 40))}
tok = ReportTokenizer.train(["heart size normal lungs clear no effusion"] * 3)
model = build_model(cfg, tok)
state = get_travelling_state(model)
rows = []
generate = model.generate
model.generate = lambda b, *a, **k: (rows.append(b.images.shape[0]), generate(b, *a, **k))[1]
proc, peak = psutil.Process(), [0]

def sample():
    while True:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)

threading.Thread(target=sample, daemon=True).start()
result = {}
for name in ("small", "small", "large"):  # the first one warms the allocator and lazy initialisation
    rt = SiteRuntime(cfg, load_site(manifests[name], tok, cfg), model, tok, 0)
    time.sleep(0.01)
    peak[0] = 0
    time.sleep(0.01)
    exams = evaluate_site(rt, state)["num-examples"]
    time.sleep(0.01)
    result[name] = {"exams": exams, "peak_mib": peak[0] / 2**20}
result["max_rows"] = max(rows)
print(json.dumps(result))
"""


def test_evaluating_a_site_with_10x_the_test_exams_stays_within_a_margin_of_the_peak(tmp_path):
    """192 px, a tiny model: evaluating 40 test exams peaks within 16 MiB of evaluating 4 (measured
    +1.5 MiB; with the former fixed batch of 64, +111 MiB), in batches of data.batch_size."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), "192", "4"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    small, large = result["small"], result["large"]
    assert large["exams"] == 10 * small["exams"] == 40
    assert result["max_rows"] <= 4
    assert large["peak_mib"] - small["peak_mib"] <= 16, result


def test_freed_heap_memory_goes_back_to_the_os():
    """What the server frees after a round (and the clients' cache after an eviction) leaves the process's RSS.
    Blocks of 4 kB come from glibc's heap (not mmap); one in 64 is kept, so the heap cannot simply shrink
    from its top: only malloc_trim hands back the free pages inside it. In a fresh process (pytest's own
    heap would blur the figures)."""
    code = """
import gc, json, psutil
from fedtar.operations.heap import release_freed_memory
rss = lambda: psutil.Process().memory_info().rss / 2**20
blocks = [bytes(4000) for _ in range(60_000)]
keep = blocks[::64]
del blocks; gc.collect()
held = rss()
print(json.dumps({"trimmed": release_freed_memory(), "held": held, "after": rss()}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=Path(__file__).resolve().parents[1]).stdout)
    assert out["trimmed"]
    assert out["held"] - out["after"] > 150, out  # ~230 MiB freed but held, then given back
