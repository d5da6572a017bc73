"""`fedtar experiment compare` on a tiny sweep: the files it writes, and that it resumes."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from conftest import TINY_FED, toml_lines
from fedtar.cli import main


def test_compare_on_prepared_data(tiny_base, tiny_federation, tmp_path):
    """A sweep over manifests (`data =`, as experiments/mimic_cxr.toml) instead of the synthetic federation."""
    sweep = tmp_path / "prepared.toml"
    sweep.write_text(f'[experiment]\nout = "{tmp_path / "out"}"\nbase = "{tiny_base}"\ndata = "{tiny_federation}"\n'
                     'seeds = [0]\nmethods = ["fedavg"]\nrounds = 1\nloso_methods = []\n\n'
                     f'[config]\n{toml_lines(TINY_FED)}')
    assert main(["experiment", "compare", "--config", str(sweep), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["status"] for r in summary["main"]] == ["completed"]


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
    # The start: the base with fresh adapters on the same test exams, a row beside the settings.
    start = summary["start"]["test"]
    assert "base, no federated round" in report and f"{start['cider']:.3f}" in report
    assert "above the start" in report and start["cmp_n"] == summary["main"][0]["metrics"]["cmp_n"]
    alphas = json.loads((out / "runs" / "all" / "fedtar-uniform-policy" / "seed-0" / "results.json").read_text())
    assert alphas["history"][0]["alpha"] == [1 / 3] * 3 or all(abs(a - 1 / 3) < 1e-4
                                                               for a in alphas["history"][0]["alpha"])
    # A second call reuses every finished run.
    results = sorted(out.glob("runs/**/results.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    assert main(["experiment", "compare", "--config", str(sweep), "--no-progress"]) == 0
    assert [p.stat().st_mtime_ns for p in results] == stamps


@pytest.mark.slow
def test_the_fta_sweep_file_parses_and_runs_at_a_tiny_size(tiny_base, tmp_path):
    """experiments/fta.toml as committed, shrunk (sites, patients, seeds, rounds, settings):
    the learning-rate search picks a rate per method from validation, the main runs use it, the
    FTA federation is written and the per-year tables appear."""
    import dataclasses
    from pathlib import Path

    from aggregator.experiment import load_sweep, run_sweep

    sweep = load_sweep(Path(__file__).resolve().parents[1] / "experiments" / "fta.toml")
    assert sweep.synthetic["split"] == "prospective" and sweep.experiment.rounds >= 10
    assert len(sweep.experiment.lr_grid) >= 2 and {"drfa", "fedavg"} <= set(sweep.experiment.methods)
    assert sweep.pretraining_pool().drift_events  # the base's pool is drawn under the same conditions
    tiny = dataclasses.replace(sweep.experiment, seeds=[0], rounds=1, lr_rounds=1, sites=2, patients=8, visits=3,
                               methods=["fedtar", "drfa"], lr_grid=sweep.experiment.lr_grid[:2],
                               loso_methods=[], base=str(tiny_base))
    all_options = [a for a in sweep.ablations if a.name == "fedtar-all-fta-options"]
    small = dataclasses.replace(sweep, experiment=tiny, ablations=all_options,
                                config={**sweep.config, **{k: v for k, v in TINY_FED.items()
                                                           if k != "federation.min_sites"}},
                                synthetic={**sweep.synthetic, "image_size": 32})
    out = run_sweep(small, tmp_path / "fta", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    chosen = summary["learning_rates"]
    assert set(chosen) == {"fedtar", "drfa"} and set(chosen.values()) <= set(tiny.lr_grid)
    for setting in ("fedtar", "drfa", "fedtar-all-fta-options"):
        folder = out / "runs" / "all" / setting / "seed-0"
        assert json.loads((folder / "results.json").read_text())["status"] == "completed"
        used = json.loads((folder / "run.json").read_text())["config"]
        assert used["train.lr"] == chosen["drfa" if setting == "drfa" else "fedtar"]
    for lr in tiny.lr_grid:  # the search scored the validation split
        folder = out / "runs" / "all" / f"drfa-lr{lr:g}" / "seed-0"
        assert json.loads((folder / "results.json").read_text())["metrics"]["num-examples"] > 0
        used = json.loads((folder / "run.json").read_text())["config"]
        assert used["federation.eval_split"] == "validate" and used["train.lr"] == lr
    meta = json.loads((out / "federation" / "federation.json").read_text())
    assert meta["config"]["split"] == "prospective" and "prospective_cut" in meta["sites"]["site1"]
    report = (out / "results.md").read_text()
    assert "Learning-rate search" in report and "per study year" in report and "| fedtar-all-fta-options " in report
    # fta.toml evaluates only at the end: no CIDEr-against-rounds plot without points to draw.
    assert not (out / "plots" / "cider_vs_rounds.png").exists() and "cider_vs_rounds" not in report
    assert (out / "plots" / "alpha_vs_rounds.png").is_file()


def _two_method_sweep(tmp_path, tiny_base, extra: str = "") -> "Path":
    config = {k: v for k, v in TINY_FED.items() if k != "federation.min_sites"}
    sweep = tmp_path / "parts.toml"
    sweep.write_text(
        f'[experiment]\nout = "{tmp_path / "out"}"\nbase = "{tiny_base}"\nseeds = [0]\n'
        f'methods = ["fedtar", "fedavg"]\nrounds = 1\nsites = 2\npatients = 6\nvisits = 3\nselect_metric = "cider"\nceiling = true\n'
        f'{extra}\n[ablations]\n"fedtar-uniform-policy" = {{ "policy.kind" = "uniform" }}\n\n'
        f'[config]\n{toml_lines(config)}')
    return sweep


def test_sweep_parts_run_together_on_one_output_and_one_writes_the_tables(tiny_base, tmp_path):
    """--part K/N as used: two processes at once on one OUT, each running its share; the one that finds
    every run finished writes the tables (with the validation selection and the ceiling)."""
    import subprocess
    import sys
    from pathlib import Path

    sweep = _two_method_sweep(tmp_path, tiny_base)
    out = tmp_path / "out"
    code = "import sys; from fedtar.cli import main; sys.exit(main(sys.argv[1:]))"
    parts = [subprocess.Popen([sys.executable, "-c", code, "experiment", "compare", "--config", str(sweep),
                               "--no-progress", "--part", f"{k}/2"], cwd=Path(__file__).resolve().parents[1],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in (1, 2)]
    logs = [p.communicate(timeout=900)[0] for p in parts]
    assert [p.returncode for p in parts] == [0, 0], logs
    summary = json.loads((out / "summary.json").read_text())
    assert {r["setting"] for r in summary["main"]} == {"fedtar", "fedavg", "fedtar-uniform-policy"}
    assert all(r["status"] == "completed" for r in summary["main"])
    # select_metric: FedTAR's settings are also scored on validation, and the one chosen there is named.
    scored = {r["setting"] for r in summary["main"] if "validation" in r}
    assert scored == {"fedtar", "fedtar-uniform-policy"}
    assert all(r["validation"] != r["metrics"] for r in summary["main"] if "validation" in r)
    report = (out / "results.md").read_text()
    assert summary["selected"] in scored and f"Selected: **{summary['selected']}**" in report
    # ceiling: the change probe's accuracy, next to the settings' cmp_acc.
    assert 0.0 <= summary["ceiling"]["overall"] <= 1.0 and summary["ceiling"]["per_observation"]
    assert "the cmp_acc ceiling" in report


def test_a_part_waits_for_another_parts_search_run_with_a_deadline(tiny_base, tmp_path):
    from aggregator.experiment import Part, load_sweep, run_sweep

    sweep = load_sweep(_two_method_sweep(tmp_path, tiny_base, "lr_grid = [1e-3, 1e-4]\nlr_rounds = 1"))
    with pytest.raises(TimeoutError, match=r"part 2/2: fedtar-lr0.001 seed 0 .*did not finish within 1 s"):
        run_sweep(sweep, progress=False, part=Part(2, 2, wait_s=1.0, poll_s=0.2))
    with pytest.raises(ValueError, match="K/N"):
        Part.parse("2")
    with pytest.raises(ValueError, match="between 1 and N"):
        Part.parse("3/2")


def test_the_fta2_sweep_file_parses_with_what_issue_19_asks_of_it():
    """experiments/fta2.toml as committed: 3 seeds, the learning-rate grid extended downward and the
    same for every method, every baseline, the ceiling, a selection rule on validation, the paper's row."""
    from pathlib import Path

    from aggregator.experiment import load_sweep

    sweep = load_sweep(Path(__file__).resolve().parents[1] / "experiments" / "fta2.toml")
    e = sweep.experiment
    assert len(e.seeds) >= 3 and min(e.lr_grid) <= 3e-5 and max(e.lr_grid) >= 1e-3
    assert {"fedavg", "fedprox", "fedadam", "fedyogi", "scaffold", "drfa", "local", "centralized"} <= set(e.methods)
    assert e.ceiling and e.select_metric == "cider"
    ablations = {a.name: a.overrides for a in sweep.ablations}
    assert ablations["fedtar-paper"]["lora.hypernetwork"] == "per-layer" and "train.lr" not in ablations["fedtar-paper"]
    assert sweep.config["model.change_head"] is True
