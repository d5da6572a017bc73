"""The synthetic federation keeps its promises, checked on statistics of what it wrote."""

from __future__ import annotations

import hashlib
import statistics
from pathlib import Path

from data_adapters.records import read_manifest
from data_adapters.summary import image_noise, summarize_site
from data_adapters.synthetic import SyntheticConfig, generate_federation
from data_adapters.synthetic.patients import SIMULATED_FINDINGS
from data_adapters.synthetic.phrasing import ELDERLY_AGE, era_of
from fedtar.operations.federation_summary import summary_text
from fedtar.scoring.labeler import extract_changes, label_report


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    cfg = SyntheticConfig(sites=2, patients=3, visits=3, seed=11, image_size=32)
    generate_federation(tmp_path / "a", cfg)
    generate_federation(tmp_path / "b", cfg)
    generate_federation(tmp_path / "c", SyntheticConfig(sites=2, patients=3, visits=3, seed=12, image_size=32))
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_shape_of_the_federation(default_federation):
    records = [r for m in default_federation for r in read_manifest(m).records]
    assert len(default_federation) == 4
    assert len(records) == 4 * 40 * 5
    years = {r.study_date.year for r in records}
    assert max(years) - min(years) >= 5, "study dates should spread over several calendar years"
    assert {r.split for r in records} == {"train", "validate", "test"}


def test_sites_differ_in_acquisition(default_federation):
    sites = [summarize_site(read_manifest(m)) for m in default_federation]
    noise = [s.noise for s in sites]
    intensity = [s.intensity for s in sites]
    assert max(noise) / min(noise) > 1.5
    assert max(intensity) - min(intensity) > 0.03


def test_sites_differ_in_phrasing(default_federation):
    vocab = [set(summarize_site(read_manifest(m)).vocabulary) for m in default_federation[:3]]
    for i in range(3):
        for j in range(i + 1, 3):
            jaccard = len(vocab[i] & vocab[j]) / len(vocab[i] | vocab[j])
            assert jaccard < 0.8, f"sites {i} and {j} phrase findings too alike ({jaccard:.2f})"


def test_acquisition_and_style_drift_with_years(default_federation):
    records = read_manifest(default_federation[0]).records
    early = [r for r in records if r.study_date.year <= 2012]
    late = [r for r in records if r.study_date.year >= 2016]
    assert early and late
    assert statistics.fmean(image_noise(r.image_paths[0]) for r in late) < \
        0.8 * statistics.fmean(image_noise(r.image_paths[0]) for r in early)
    # Sentence templates change by era: "There is ..." dominates early, vanishes late.
    def there_is_rate(rs):
        return statistics.fmean(r.findings.count("There is") / max(r.findings.count("."), 1) for r in rs)
    assert {era_of(r.study_date.year) for r in early} == {0}
    assert there_is_rate(early) > 0.3 and there_is_rate(late) == 0


def test_demographic_dependent_content(default_federation):
    records = [r for m in default_federation for r in read_manifest(m).records]
    elderly = [r for r in records if r.age >= ELDERLY_AGE]
    younger = [r for r in records if r.age < ELDERLY_AGE]
    degenerative = lambda r: "degenerative" in r.findings.lower()  # noqa: E731
    assert statistics.fmean(map(degenerative, elderly)) > 0.95
    assert statistics.fmean(map(degenerative, younger)) < 0.05
    breast = lambda r: "breast" in r.findings.lower()  # noqa: E731
    assert all(breast(r) for r in records if r.sex == "F")
    assert not any(breast(r) for r in records if r.sex == "M")
    # Age also moves prevalence, as in real cohorts.
    def prevalence(rs):
        return statistics.fmean(r.labels["Cardiomegaly"] > 0 for r in rs)
    assert prevalence(elderly) > prevalence(younger)


def test_reports_agree_with_ground_truth_labels(default_federation):
    for m in default_federation:
        for r in read_manifest(m).records:
            labels = label_report(r.findings)
            for finding, severity in r.labels.items():
                assert (labels.get(finding, 0) == 1) == (severity > 0), (finding, r.findings)


def test_change_statements_match_change_labels(default_federation):
    n_changes = 0
    for m in default_federation:
        for r in read_manifest(m).records:
            said = {f: c for f, c in extract_changes(r.findings).items() if f in SIMULATED_FINDINGS}
            assert said == r.changes, r.findings
            if r.visit_index == 1:
                assert not r.changes
            n_changes += len(r.changes)
    assert n_changes > 200


def test_summary_lists_sites_and_prevalence(small_federation):
    text = summary_text(small_federation)
    for site in ("site1", "site2", "site3"):
        assert site in text
    assert "Pleural Effusion" in text and "t=4" in text
