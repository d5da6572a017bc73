"""`fedtar experiment compare` on a tiny sweep: the files it writes, and that it resumes."""

from __future__ import annotations

import json

from PIL import Image

from conftest import TINY_FED, toml_lines
from fedtar.cli import main


def test_compare_writes_tables_plots_and_resumes(tiny_base, tmp_path, capsys):
    config = {k: v for k, v in TINY_FED.items() if k != "federation.min_sites"}
    cfg_lines = toml_lines(config)
    sweep = tmp_path / "tiny.toml"
    sweep.write_text(
        f'[experiment]\nout = "{tmp_path / "out"}"\nbase = "{tiny_base}"\nseeds = [0]\n'
        'methods = ["fedtar", "fedavg"]\nrounds = 1\nloso_methods = ["fedtar"]\n'
        'sites = 2\npatients = 6\nvisits = 3\n\n'
        '[ablations]\n"fedtar-uniform-policy" = { "policy.kind" = "uniform" }\n\n'
        f'[config]\n"federation.eval_every" = 1\n{cfg_lines}')
    assert main(["experiment", "compare", "--config", str(sweep), "--no-progress"]) == 0
    out = tmp_path / "out"
    report = (out / "results.md").read_text()
    for row in ("| fedtar ", "| fedavg ", "| fedtar-uniform-policy "):
        assert row in report
    assert "cider per visit index" in report and "held-out site" in report and "site 2 held out" in report
    assert "Where FedTAR stands" in report and "CPU cores" in report
    for name in ("cider_vs_rounds", "metrics_vs_visit", "alpha_vs_rounds"):
        with Image.open(out / "plots" / f"{name}.png") as im:
            assert im.format == "PNG" and im.width > 300
        assert f"plots/{name}.png" in report
    summary = json.loads((out / "summary.json").read_text())
    assert {r["setting"] for r in summary["main"]} == {"fedtar", "fedavg", "fedtar-uniform-policy"}
    assert all(r["status"] == "completed" and "cider" in r["metrics"] for r in summary["main"])
    assert set(summary["loso"]) == {"0", "1"}
    alphas = json.loads((out / "runs" / "all" / "fedtar-uniform-policy" / "seed-0" / "results.json").read_text())
    assert alphas["history"][0]["alpha"] == [1 / 3] * 3 or all(abs(a - 1 / 3) < 1e-4
                                                               for a in alphas["history"][0]["alpha"])
    # A second call reuses every finished run.
    results = sorted(out.glob("runs/**/results.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    assert main(["experiment", "compare", "--config", str(sweep), "--no-progress"]) == 0
    assert [p.stat().st_mtime_ns for p in results] == stamps
