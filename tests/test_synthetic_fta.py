"""The FTA conditions of the synthetic generator change what they say, and only that.

Each knob is checked on what was written: per-site timelines and follow-up densities, the
drift event (new phrasing and section style, new scanner from the site's change year), the
age-only statement, the prospective split. Also: the same seed writes the same bytes in two
processes with different hash seeds (no draw follows the order of a set).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_adapters.records import read_manifest
from data_adapters.synthetic import SyntheticConfig, generate_federation
from data_adapters.synthetic.phrasing import AORTA_AGE, NAMES, demographic_statements
from test_synthetic import _tree_digest

FTA = SyntheticConfig(sites=4, patients=24, visits=4, seed=5, image_size=32, timeline_spread=8,
                      drift_events=True, demographic_signal=True, split="prospective")


@pytest.fixture(scope="module")
def fta(tmp_path_factory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("fta")
    manifests = generate_federation(out, FTA)
    meta = json.loads((out / "federation.json").read_text())
    return out, meta, {m.parent.name: read_manifest(m).records for m in manifests}


def test_sites_have_their_own_timelines_and_follow_up(fta):
    _, meta, records = fta
    starts = {s: min(r.study_date for r in recs).year for s, recs in records.items()}
    assert max(starts.values()) - min(starts.values()) >= FTA.timeline_spread - 1
    assert {s: t["start_year"] for s, t in meta["sites"].items()} == starts
    gaps = {s: statistics.median(r.days_since_prior for r in recs if r.visit_index > 1)
            for s, recs in records.items()}
    assert max(gaps.values()) > 2.5 * min(gaps.values()), f"follow-up densities should differ: {gaps}"
    for s, recs in records.items():  # each gap lies in the site's declared range
        lo, hi = meta["sites"][s]["gap_days"]
        assert all(lo <= r.days_since_prior < hi for r in recs if r.visit_index > 1)


def test_the_template_changes_at_the_sites_change_year(fta):
    out, meta, records = fta
    new_words = [names[3] for names in NAMES.values()]
    for site, recs in records.items():
        change = meta["sites"][site]["change_year"]
        before = [r for r in recs if r.study_date.year < change]
        after = [r for r in recs if r.study_date.year >= change]
        assert before and after, f"{site}: the change year should fall inside the site's exams"
        assert all(r.findings.startswith(("Comparison:", "Lungs and heart:")) for r in after)
        assert not any("Lungs and heart:" in r.findings or "Other:" in r.findings for r in before)
        text_after = " ".join(r.findings for r in after).lower()
        assert any(w in text_after for w in new_words)
        assert "heart size is within normal limits" not in " ".join(r.findings for r in before).lower()


def test_the_scanner_changes_at_the_sites_change_year(fta):
    out, meta, records = fta

    def brightness(r) -> float:  # mean of the image's outer frame (background and body edge)
        a = np.asarray(Image.open(out / r.site_id / r.image_paths[0]), dtype=float)
        return float(np.concatenate([a[:3].ravel(), a[-3:].ravel()]).mean())

    shifts = []
    for site, recs in records.items():
        change = meta["sites"][site]["change_year"]
        last_old = [brightness(r) for r in recs if r.study_date.year == change - 1]
        first_new = [brightness(r) for r in recs if r.study_date.year == change]
        if last_old and first_new:
            shifts.append(abs(statistics.fmean(first_new) - statistics.fmean(last_old)))
    # A new scanner moves the acquisition by more than one year of gradual drift would.
    assert shifts and max(shifts) > 3.0, shifts


def test_the_age_only_statement_follows_age(fta):
    _, _, records = fta
    rows = [r for recs in records.values() for r in recs]
    assert all(demographic_statements(r.findings)[2] == (r.age >= AORTA_AGE) for r in rows)
    assert any(r.age >= AORTA_AGE for r in rows) and any(r.age < AORTA_AGE for r in rows)


def test_prospective_split_has_no_test_exam_before_the_cut(fta):
    _, meta, records = fta
    for site, recs in records.items():
        cut = dt.date.fromisoformat(meta["sites"][site]["prospective_cut"])
        assert all((r.split == "test") == (r.study_date >= cut) for r in recs)
        test = sum(r.split == "test" for r in recs)
        assert abs(test / len(recs) - FTA.test_fraction) < 0.05
        assert any(r.split == "validate" for r in recs) and any(r.split == "train" for r in recs)
        # Validation patients are a patient group: none of them has a train exam.
        val_patients = {r.patient_id for r in recs if r.split == "validate"}
        assert not any(r.split == "train" and r.patient_id in val_patients for r in recs)


def test_knobs_are_off_by_default_and_the_default_federation_has_none_of_them(tmp_path):
    manifests = generate_federation(tmp_path, SyntheticConfig(sites=2, patients=6, visits=3, image_size=32))
    rows = [r for m in manifests for r in read_manifest(m).records]
    assert "sites" not in json.loads((tmp_path / "federation.json").read_text())
    assert not any("Lungs and heart:" in r.findings or demographic_statements(r.findings)[2] for r in rows)
    assert {r.study_date.year for r in rows if r.visit_index == 1} <= {2010, 2011, 2012}


def test_same_seed_same_bytes_in_two_processes_with_different_hash_seeds(tmp_path):
    code = ("import sys; from data_adapters.synthetic import SyntheticConfig, generate_federation; "
            "generate_federation(sys.argv[1], SyntheticConfig(sites=2, patients=6, visits=3, image_size=32, "
            "seed=4, drift_events=True, timeline_spread=3))")
    root = Path(__file__).resolve().parents[1]
    for name, hash_seed in (("a", "1"), ("b", "2")):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True, cwd=root,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed}, timeout=120)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
