"""Manifests and the exam loader: ordering, priors, batches, and bad rows skipped with reasons."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from data_adapters.records import MANIFEST_COLUMNS, ManifestError, read_manifest
from fedtar.data.exams import load_exams
from fedtar.data.tokenizer import ReportTokenizer


def _copy_site(manifest: Path, dest: Path) -> Path:
    shutil.copytree(manifest.parent, dest)
    return dest / "manifest.csv"


def _rewrite(manifest: Path, edit) -> None:
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rows = edit(rows)
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture()
def tokenizer(small_federation) -> ReportTokenizer:
    return ReportTokenizer.train(r.findings for r in read_manifest(small_federation[0]).records)


def test_visits_in_date_order_with_gaps(small_federation, tmp_path):
    manifest = _copy_site(small_federation[0], tmp_path / "site")
    _rewrite(manifest, lambda rows: list(reversed(rows)))  # order in the file must not matter
    records = read_manifest(manifest).records
    by_patient = {}
    for r in records:
        by_patient.setdefault(r.patient_id, []).append(r)
    for exams in by_patient.values():
        dates = [r.study_date for r in exams]
        assert dates == sorted(dates)
        assert [r.visit_index for r in exams] == list(range(1, len(exams) + 1))
        assert exams[0].days_since_prior == 0
        for a, b in zip(exams, exams[1:]):
            assert b.days_since_prior == (b.study_date - a.study_date).days > 0


def test_batches_carry_images_tokens_profiles_and_priors(small_federation, tokenizer):
    exams = load_exams(small_federation[0], tokenizer, image_size=32, max_tokens=80)
    batch = next(exams.batches(len(exams)))
    images = batch.images
    assert images.shape == (len(exams), 1, 32, 32)
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    first = batch.visit_index == 1
    assert not batch.has_prior[first].any() and batch.has_prior[~first].all()
    # The prior image and report are those of the same patient's previous visit.
    for i in torch.nonzero(~first).flatten().tolist()[:10]:
        r = exams.records[i]
        j = int(exams.prior_index[i])
        assert exams.records[j].patient_id == r.patient_id
        assert exams.records[j].visit_index == r.visit_index - 1
        assert torch.equal(batch.prior_images[i], images[j])
        assert torch.equal(batch.prior_ids[i], exams.input_ids[j])
        assert tokenizer.decode(batch.prior_ids[i].tolist()) == exams.records[j].findings.lower()
    assert batch.prior_images[first].abs().sum() == 0
    assert batch.profiles.shape == (len(exams), 3)


def test_split_selection_keeps_priors_reachable(small_federation, tokenizer):
    exams = load_exams(small_federation[0], tokenizer, image_size=32)
    test = exams.where(split="test", visit=3)
    assert test.num_examples() == sum(r.split == "test" and r.visit_index == 3 for r in exams.records)
    batch = next(test.batches(64))
    assert batch.has_prior.all()
    assert all(test.records[i].visit_index == 3 for i in batch.index.tolist())


def test_bad_rows_are_skipped_counted_and_named(small_federation, tmp_path, tokenizer):
    manifest = _copy_site(small_federation[0], tmp_path / "site")

    def corrupt(rows):
        rows[1]["image_paths"] = "images/does-not-exist.png"
        rows[2]["findings"] = rows[2]["impression"] = ""
        rows[3]["sex"] = "X"
        rows[4]["study_date"] = "2015-13-45"
        return rows

    _rewrite(manifest, corrupt)
    # An image that exists but is not an image.
    victim = read_manifest(manifest).records[10].image_paths[0]
    victim.write_bytes(b"not a png")
    m = read_manifest(manifest)
    reasons = {s.line: s.reason for s in m.skipped}
    assert set(reasons) == {3, 4, 5, 6}
    assert "missing image" in reasons[3]
    assert "empty report" in reasons[4]
    assert "unknown sex" in reasons[5] and "'X'" in reasons[5]
    assert "study_date" in reasons[6]
    assert all(str(manifest) in str(s) for s in m.skipped)
    exams = load_exams(m, tokenizer, image_size=32)
    assert len(exams.skipped) == 5
    assert any("unreadable image" in s.reason and victim.name in s.reason for s in exams.skipped)
    assert len(exams) == len(m.records) - 1
    # Visits are renumbered over the exams that remain: no holes.
    for r in exams.records:
        j = [k for k, q in enumerate(exams.records) if q.patient_id == r.patient_id]
        assert sorted(exams.records[k].visit_index for k in j) == list(range(1, len(j) + 1))


def test_manifest_missing_column_is_a_clear_error(tmp_path):
    bad = tmp_path / "manifest.csv"
    bad.write_text("site_id,patient_id\nA,B\n")
    with pytest.raises(ManifestError, match=r"manifest.csv: missing column\(s\) visit_index"):
        read_manifest(bad)
