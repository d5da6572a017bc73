"""Issue 13, empty sites: a site with no training rows is not a valid reply; all-empty rounds stop clearly."""

from __future__ import annotations

import csv
import shutil

from aggregator.server_app import run_from_values
from test_federation import grid_for, values


def _without_training_rows(federation, out, sites):
    """A copy of the federation where the given sites' train rows are moved to the test split."""
    shutil.copytree(federation, out)
    for name in sites:
        path = out / name / "manifest.csv"
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            row["split"] = "test" if row["split"] == "train" else row["split"]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return out


def test_an_empty_site_is_left_out_with_its_reason(tiny_base, tiny_federation, tmp_path):
    data = _without_training_rows(tiny_federation, tmp_path / "fed", ["site2"])
    result = run_from_values(grid_for(), values(tiny_base, data, tmp_path / "run", federation__rounds=1))
    entry = result.history[0]
    assert result.status == "completed" and entry["answered"] == 3 and entry["valid"] == 2
    assert any("site site2 has no exams in its train split" in r for r in entry["rejected"].values())


def test_all_sites_empty_stop_the_run_with_a_clear_status(tiny_base, tiny_federation, tmp_path):
    data = _without_training_rows(tiny_federation, tmp_path / "fed", ["site1", "site2", "site3"])
    result = run_from_values(grid_for(), values(tiny_base, data, tmp_path / "run", federation__rounds=1,
                                                federation__round_retries=0))
    assert result.status == "stopped" and result.rounds_done == 0
    assert result.history[0]["valid"] == 0
    assert all("no exams in its train split" in r for r in result.history[0]["rejected"].values())
