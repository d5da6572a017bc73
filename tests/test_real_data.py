"""Real-data adapters on miniature archives in the real formats (tests/archives.py)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from archives import (
    DX_STORAGE,
    HOSPITAL_PATIENTS,
    MIMIC_SUBJECTS,
    build_hospital_export,
    build_mimic,
    ct_slice_hu,
    dicom_dataset,
    save_dicom,
    tree_digest,
    write_ct_series,
)

from data_adapters.ct import HU_WINDOWS, volume_transform, write_nifti
from data_adapters.deid import Pseudonymizer, load_or_create_secret, scrub_text
from data_adapters.dicom import DicomOptions, prepare_dicom
from data_adapters.dicom_io import DicomReadError, read_ct_series, read_projection
from data_adapters.mimic_cxr import MimicOptions, prepare_mimic_cxr
from data_adapters.records import find_manifests, read_manifest
from data_adapters.report_sections import extract_sections
from fedtar.cli import main

KEY = Pseudonymizer(b"test-site-secret-0123456789abcdef")


@pytest.fixture(scope="module")
def mimic(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mimic")
    facts = build_mimic(root / "mimic-cxr-jpg", root / "mimiciv" / "hosp")
    before = tree_digest(root / "mimic-cxr-jpg")
    out = root / "prepared"
    prepared = prepare_mimic_cxr(root / "mimic-cxr-jpg", root / "mimiciv" / "hosp" / "patients.csv", out, KEY,
                                 MimicOptions(sites=2, image_size=32))
    return {**facts, "root": root / "mimic-cxr-jpg", "patients": root / "mimiciv" / "hosp" / "patients.csv",
            "out": out, "prepared": prepared, "before": before}


def _records(out: Path):
    return [r for m in find_manifests(out) for r in read_manifest(m).records]


def _study_of(record) -> str:
    return record.image_paths[0].name.split("-")[0]


def test_mimic_visits_ages_views_sections_and_splits(mimic):
    records = _records(mimic["out"])
    by_patient: dict[str, list] = {}
    for r in records:
        by_patient.setdefault(r.patient_id, []).append(r)
    # Subject 1's studies: two on one day (ordered by StudyTime), one a year later; rows were scrambled.
    s1 = sorted(by_patient[KEY.patient("10000001")], key=lambda r: r.visit_index)
    assert [_study_of(r) for r in s1] == [KEY.study(s) for s in ("50000011", "50000012", "50000013")]
    assert [r.days_since_prior for r in s1] == [0, 0, (dt.date(2182, 3, 1) - dt.date(2181, 1, 15)).days]
    assert [r.age for r in s1] == [51.0, 51.0, 52.0]  # anchor_age 50 in anchor_year 2180
    assert all(r.sex == "M" for r in s1)
    # Frontal views only, one per study; the AP-only study had a corrupt image and is gone.
    assert {r.extras["view"] for r in records} <= {"PA", "AP"}
    assert all(len(r.image_paths) == 1 for r in records)
    assert KEY.study("50000022") not in {_study_of(r) for r in records}
    # Sections: IMPRESSION-only report, and a report without headers (last paragraph).
    studies = {_study_of(r): r for r in records}
    impression_only = studies[KEY.study("50000041")]
    assert impression_only.findings == "" and impression_only.impression == "Stable small left effusion."
    assert impression_only.report("findings") == "Stable small left effusion."
    assert studies[KEY.study("50000023")].findings == "Lungs are clear. No pneumothorax."
    assert studies[KEY.study("50000011")].findings == "Heart size is normal. Study 1 shows no effusion."
    # The official split, per subject here.
    for subject, (_, _, _, split) in MIMIC_SUBJECTS.items():
        assert {r.split for r in by_patient.get(KEY.patient(subject), [])} <= {split}
    # CheXpert: 1.0 -> 2, -1.0 -> 1, blank -> unknown.
    assert studies[KEY.study("50000011")].labels == {"atelectasis": 2, "consolidation": 1}
    # The DICOM subject (MONOCHROME1) was read: its exams are there.
    assert len(by_patient[KEY.patient("10000004")]) == 2


def test_mimic_skip_report_names_each_bad_row(mimic):
    skipped = mimic["prepared"].skipped
    reasons = sorted(s.reason.split(" (")[0] for s in skipped)
    assert reasons == ["no report file", "subject not in patients.csv", "subject not in patients.csv",
                       "unreadable image"]
    metadata = list(csv.reader((mimic["root"] / "mimic-cxr-2.0.0-metadata.csv").open()))
    for s in skipped:  # the line points at a metadata row of the study named in the reason
        assert s.path.name == "mimic-cxr-2.0.0-metadata.csv"
        study = metadata[s.line - 1][2]
        assert KEY.study(study) in s.reason
    assert (mimic["out"] / "skipped.csv").read_text().count("\n") == 1 + len(skipped)
    assert "Skipped 4 item(s)" in (mimic["out"] / "summary.txt").read_text()


def test_mimic_sites_patient_disjoint_and_source_untouched(mimic):
    site_of: dict[str, set[str]] = {}
    for r in _records(mimic["out"]):
        site_of.setdefault(r.patient_id, set()).add(r.site_id)
    assert all(len(s) == 1 for s in site_of.values())
    assert len({s for v in site_of.values() for s in v}) == 2
    assert tree_digest(mimic["root"]) == mimic["before"]


@pytest.mark.parametrize("partition", ["demographic", "year"])
def test_mimic_partitions(mimic, tmp_path, partition):
    prepare_mimic_cxr(mimic["root"], mimic["patients"], tmp_path, KEY,
                      MimicOptions(sites=2, partition=partition, image_size=16))
    records = _records(tmp_path)
    site_of = {}
    for r in records:
        assert site_of.setdefault(r.patient_id, r.site_id) == r.site_id
    assert len(set(site_of)) == len(MIMIC_SUBJECTS)  # every usable subject placed once
    if partition == "year":  # site1 holds the subjects whose first study is earliest
        first = {p: min(r.study_date for r in records if r.patient_id == p) for p in site_of}
        assert max(first[p] for p in site_of if site_of[p] == "site1") <= \
            min(first[p] for p in site_of if site_of[p] == "site2")


def test_prepare_refuses_to_write_into_the_source(mimic):
    with pytest.raises(ValueError, match="refusing to write into the source archive"):
        prepare_mimic_cxr(mimic["root"], mimic["patients"], mimic["root"] / "out", KEY)


def test_malformed_metadata_is_a_clear_error_and_bad_dates_are_skips(mimic, tmp_path, capsys):
    root = tmp_path / "broken"
    build_mimic(root, tmp_path / "hosp")
    meta = root / "mimic-cxr-2.0.0-metadata.csv"
    rows = list(csv.reader(meta.open()))
    rows[1][7] = "2181-13-45"  # a bad StudyDate
    with meta.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    prepared = prepare_mimic_cxr(root, tmp_path / "hosp" / "patients.csv", tmp_path / "out", KEY,
                                 MimicOptions(sites=1, image_size=16))
    assert any(s.line == 2 and "unparsable StudyDate" in s.reason for s in prepared.skipped)
    with meta.open("w", newline="") as f:  # drop the StudyTime column
        csv.writer(f, lineterminator="\n").writerows([r[:8] for r in rows])
    code = main(["prepare", "mimic-cxr", "--root", str(root), "--patients", str(tmp_path / "hosp" / "patients.csv"),
                 "--out", str(tmp_path / "out2"), "--secret", str(tmp_path / "secret")])
    err = capsys.readouterr().err
    assert code == 2 and "mimic-cxr-2.0.0-metadata.csv: missing column(s) StudyTime" in err


def test_report_sections_follow_the_mimic_parser():
    s = extract_sections(" FINAL REPORT\n INDICATION: cough\n\n FINDINGS: Clear lungs.\n\n"
                         " IMPRESSION: Normal.\n FINDINGS AND IMPRESSION: Nothing acute.\n")
    assert s.findings == "Clear lungs." and s.impression == "Nothing acute."  # last impression wins
    assert extract_sections("CONCLUSION: Stable.").impression == "Stable."
    assert extract_sections("first para\n\nlast para here").findings == "last para here"


def test_monochrome1_and_rescale_equal_the_monochrome2_file(tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 2000, (24, 20)).astype(np.uint16)
    slope, intercept, center, width = 2.0, -1000.0, 500.0, 3000.0
    values = stored * slope + intercept
    mirrored = np.round(2 * center - values).astype(np.int64)  # displayed the same under MONOCHROME2
    offset = -int(mirrored.min())
    m1 = save_dicom(dicom_dataset(stored, DX_STORAGE, PhotometricInterpretation="MONOCHROME1", RescaleSlope=slope,
                                  RescaleIntercept=intercept, WindowCenter=center, WindowWidth=width),
                    tmp_path / "m1.dcm")
    m2 = save_dicom(dicom_dataset((mirrored + offset).astype(np.uint16), DX_STORAGE, RescaleSlope=1,
                                  RescaleIntercept=-offset, WindowCenter=center, WindowWidth=width),
                    tmp_path / "m2.dcm")
    a, b = read_projection(m1), read_projection(m2)
    assert a.shape == (24, 20) and 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_allclose(a, b, atol=1e-6)
    # MONOCHROME1: high values are dark; the file's window applies to the rescaled values.
    np.testing.assert_allclose(a, 1 - np.clip((values - (center - width / 2)) / width, 0, 1), atol=1e-6)
    (tmp_path / "bad.dcm").write_bytes(m1.read_bytes()[:400])
    with pytest.raises(DicomReadError, match="bad.dcm"):
        read_projection(tmp_path / "bad.dcm")


def test_ct_series_out_of_order_is_sorted_with_hu_windows(tmp_path):
    paths = write_ct_series(tmp_path / "series", "1.2.3", slices=8, size=16)
    np.random.default_rng(1).shuffle(paths)
    vol = read_ct_series(paths)
    assert vol.hu.shape == (8, 16, 16) and vol.spacing == (2.5, 0.8, 0.8)
    np.testing.assert_allclose(vol.hu[:, 5, 5], [ct_slice_hu(k) for k in range(8)])
    assert vol.hu[3, 0, 0] == ct_slice_hu(3) + 3
    volume = volume_transform(16, 8)(str(write_nifti(vol, tmp_path / "ct.nii.gz")))
    assert tuple(volume.shape) == (3, 16, 16, 8)
    for c, name in enumerate(("lung", "mediastinal", "bone")):
        center, width = HU_WINDOWS[name]
        expected = np.clip((np.array([ct_slice_hu(k) for k in range(8)]) - center + width / 2) / width, 0, 1)
        np.testing.assert_allclose(np.asarray(volume[c, 5, 5, :]), expected, atol=1e-5)


def test_a_ct_series_with_a_slice_of_another_size_is_a_read_error_naming_the_file(tmp_path):
    """Before: np.stack raised a bare ValueError and the whole prepare stopped; now the study is
    skipped with this reason (dicom._write_images catches DicomReadError)."""
    paths = write_ct_series(tmp_path / "series", "1.2.3", slices=4, size=16)
    odd = write_ct_series(tmp_path / "odd", "1.2.3", slices=5, size=12)[-1]
    with pytest.raises(DicomReadError, match=rf"{odd.name}: CT slice of 12x12 pixels in a series of 16x16"):
        read_ct_series([*paths, odd])


@pytest.fixture(scope="module")
def hospital(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hospital")
    facts = build_hospital_export(root / "export")
    return {**facts, "root": root / "export", "tmp": root}


def test_hospital_dicom_export_manifest(hospital):
    before = tree_digest(hospital["root"])
    out = hospital["tmp"] / "xray"
    prepared = prepare_dicom(hospital["root"], out, KEY, DicomOptions(image_size=32),
                             reports_csv=hospital["root"] / "reports.csv")
    records = read_manifest(prepared.manifests[0]).records
    jane = sorted((r for r in records if r.patient_id == KEY.patient("MRN-884201")), key=lambda r: r.visit_index)
    richard = [r for r in records if r.patient_id == KEY.patient("MRN-552910")]
    assert [r.study_date.isoformat() for r in jane] == ["2020-01-05", "2021-02-20", "2022-06-01"]
    assert [r.age for r in jane] == [round((dt.date(2020, 1, 5) - dt.date(1960, 3, 10)).days / 365.25, 2),
                                     round((dt.date(2021, 2, 20) - dt.date(1960, 3, 10)).days / 365.25, 2),
                                     round((dt.date(2022, 6, 1) - dt.date(1960, 3, 10)).days / 365.25, 2)]
    assert len(richard) == 2 and {r.age for r in richard} == {72.0}  # PatientAge 072Y; third study lacks a report
    assert {r.extras["view"] for r in records} == {"PA"}
    assert jane[0].findings == "Patient ___ ___ (___) accession ___: heart size is normal."  # from the SR
    assert jane[0].impression == "No acute process."
    reasons = {str(s.path): s.reason for s in prepared.skipped}
    assert "truncated or incomplete header" in reasons["export0/truncated.dcm"]
    assert sum("no report" in r for r in reasons.values()) == 1
    assert sum("modality CT not selected" in r for r in reasons.values()) == 2
    assert tree_digest(hospital["root"]) == before
    # MONOCHROME1 images come out with the same polarity as MONOCHROME2 ones (dense = bright).
    from PIL import Image
    means = {r.patient_id: np.asarray(Image.open(r.image_paths[0])).mean() for r in records}
    assert abs(means[KEY.patient("MRN-884201")] - means[KEY.patient("MRN-552910")]) < 40


def test_hospital_ct_exams_become_windowed_volumes(hospital):
    out = hospital["tmp"] / "ct"
    prepared = prepare_dicom(hospital["root"], out, KEY, DicomOptions(modality="ct"),
                             reports_csv=hospital["root"] / "reports.csv")
    records = read_manifest(prepared.manifests[0]).records
    assert [r.visit_index for r in records] == [1, 2] and records[1].days_since_prior == 365
    assert all(r.image_paths[0].name.endswith(".nii.gz") for r in records)
    from fedtar.data.exams import load_exams
    from fedtar.data.image_store import image_reader
    from fedtar.data.tokenizer import ReportTokenizer

    tok = ReportTokenizer.train([r.findings for r in records])
    exams = load_exams(prepared.manifests[0], tok, reader=image_reader(16, volume_depth=8))
    images = exams.gather(torch.arange(len(exams))).images
    assert tuple(images.shape) == (2, 3, 16, 16, 8)
    lung = images[0, 0, 5, 5, :]
    assert torch.all(lung[1:] >= lung[:-1]) and lung[-1] > lung[0]  # HU rise from feet to head


def test_report_generator_takes_ct_volumes(hospital, tmp_path):
    """The 3D encoder option: a CT site trains, generates, and saves/reloads offline."""
    from fedtar.config import load_config
    from fedtar.data.site import load_site
    from fedtar.data.tokenizer import ReportTokenizer
    from fedtar.generator.model import build_model, load_model, save_model
    from fedtar.generator.parameters import get_travelling_state
    from fedtar.learning.training import generate_reports, make_optimizer, mean_loss, train_local

    prepared = prepare_dicom(hospital["root"], tmp_path / "ct", KEY, DicomOptions(modality="ct"),
                             reports_csv=hospital["root"] / "reports.csv")
    cfg = load_config(overrides={"model.encoder": "tiny-3d", "model.image_channels": 3, "data.image_size": 16,
                                 "data.volume_depth": 8, "model.hidden_size": 32, "model.layers": 1,
                                 "model.heads": 2, "demographics.gmm_components": 2, "train.lr": 3e-3,
                                 "train.base": "trainable"})
    records = read_manifest(prepared.manifests[0]).records
    tok = ReportTokenizer.train([r.findings for r in records])
    torch.manual_seed(0)
    model = build_model(cfg, tok)
    assert any("vit.blocks.0.attn.qkv" in n and "lora" in n for n, _ in model.named_parameters())
    site = load_site(prepared.manifests[0], tok, cfg)
    exams = site.exams
    before = mean_loss(model, exams)
    train_local(model, exams, cfg.train, 2, make_optimizer(model, cfg.train), epochs=40)
    after = mean_loss(model, exams)
    print(f"CT loss {before:.3f} -> {after:.3f}")
    assert after < before - 0.5
    assert len(generate_reports(model, exams, tok)) == 2
    reloaded, _ = load_model(save_model(tmp_path / "model", model, tok))
    for k, v in get_travelling_state(model).items():
        assert torch.equal(v, get_travelling_state(reloaded)[k])


def test_no_source_identifier_in_manifests_logs_or_messages(mimic, hospital, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    secret = tmp_path / "keys" / "secret"
    assert main(["prepare", "dicom", "--root", str(hospital["root"]), "--out", str(tmp_path / "h"),
                 "--reports-csv", str(hospital["root"] / "reports.csv"), "--secret", str(secret),
                 "--date-shift-days", "30", "--image-size", "32"]) == 0
    assert os.stat(secret).st_mode & 0o777 == 0o600
    assert main(["prepare", "mimic-cxr", "--root", str(mimic["root"]), "--patients", str(mimic["patients"]),
                 "--out", str(tmp_path / "m"), "--sites", "2", "--secret", str(secret), "--image-size", "32"]) == 0
    captured = capsys.readouterr()
    texts = [captured.out, captured.err, caplog.text]
    for folder in (tmp_path / "h", tmp_path / "m"):
        for p in folder.rglob("*"):
            texts.append(str(p.relative_to(folder)))
            if p.suffix in (".csv", ".txt", ".json"):
                texts.append(p.read_text())
    blob = "\n".join(texts).upper()
    identifiers = [*MIMIC_SUBJECTS, "10000005", "MRN-CT-31", "POE^ED", "CTACC0", "CTACC1", "ST EXAMPLE HOSPITAL"]
    for pid, (name, birth, _, _) in HOSPITAL_PATIENTS.items():
        identifiers += [pid, name, *name.split("^"), birth or "NONE-GIVEN"]
    identifiers += [f"ACC{p}{s}77" for p in range(2) for s in range(3)]
    leaked = [i for i in identifiers if i.upper() in blob]
    assert not leaked, f"identifiers found in outputs: {leaked}"
    # Date shift: the same offset for all of a patient's exams (intervals kept).
    shifted = read_manifest(tmp_path / "h" / "site1" / "manifest.csv").records
    jane = sorted((r for r in shifted if r.patient_id == Pseudonymizer(load_or_create_secret(secret)).patient(
        "MRN-884201")), key=lambda r: r.visit_index)
    assert [r.days_since_prior for r in jane] == [0, 412, 466]
    assert jane[0].study_date != dt.date(2020, 1, 5) or jane[1].study_date != dt.date(2021, 2, 20)


def test_pseudonyms_are_keyed_and_stable():
    a, b = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    assert a.patient("123") == a.patient(" 123 ") != b.patient("123")
    assert a.patient("123") != a.patient("124")
    shift = Pseudonymizer(b"k" * 32, max_date_shift_days=100)
    d1, d2 = dt.date(2020, 1, 1), dt.date(2020, 6, 1)
    assert (shift.shift("p", d2) - shift.shift("p", d1)).days == (d2 - d1).days
    assert abs((shift.shift("p", d1) - d1).days) <= 100
    assert scrub_text("Mr DOE JANE, MRN 77 seen", ["DOE^JANE", "77"]) == "Mr ___ ___, MRN ___ seen"


def test_evaluate_and_simulate_on_the_miniature_mimic_tree(mimic, tiny_base, tiny_federation, tmp_path, capsys):
    from conftest import TINY_FED

    sets = [a for k, v in TINY_FED.items() for a in ("--set", f"{k}={v}")]
    common = ["--base", str(tiny_base), "--rounds", "1", "--engine", "inprocess", "--strategies", "fedtar", *sets]
    # A model trained on the synthetic federation, evaluated on MIMIC's test split.
    assert main(["simulate", "--out", str(tmp_path / "synthetic"), "--data", str(tiny_federation), *common]) == 0
    run = tmp_path / "synthetic" / "runs" / "all" / "fedtar" / "seed-0"
    reports = tmp_path / "generated.csv"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run), "--data", str(mimic["out"]), "--split", "test",
                 "--out", str(reports), "--no-meteor"]) == 0
    out = capsys.readouterr().out
    assert "test split: 2 exams" in out
    for col in ("bleu1", "bleu4", "rouge_l", "cider", "ce_precision", "ce_recall", "ce_f1"):
        assert col in out
    rows = list(csv.DictReader(reports.open()))
    assert len(rows) == 2 and all(r["patient_id"] == KEY.patient("10000004") for r in rows)
    assert rows[0]["reference"] == "Stable small left effusion."
    # The same federation trained on the prepared MIMIC sites. One of the two miniature sites has no
    # training exam: it answers with an error and is not counted, so the round needs min_sites = 1.
    assert main(["simulate", "--out", str(tmp_path / "mimic_run"), "--data", str(mimic["out"]), *common,
                 "--set", "federation.min_sites=1"]) == 0
    results = json.loads((tmp_path / "mimic_run" / "runs" / "all" / "fedtar" / "seed-0" / "results.json").read_text())
    assert results["status"] == "completed" and results["rounds_done"] == 1
    assert results["history"][0]["valid"] == 1
    assert results["metrics"]["num-examples"] == 2.0  # the test patients of both sites
