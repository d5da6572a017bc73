"""Images that may carry burned-in text are denied by default, with the reason named and counted."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from archives import DX_STORAGE, _picture, build_mimic, dicom_dataset, save_dicom
from data_adapters.deid import Pseudonymizer
from data_adapters.dicom import DicomOptions, prepare_dicom
from data_adapters.dicom_io import BurnedInError, burned_in_reason, read_projection
from data_adapters.mimic_cxr import MimicOptions, prepare_mimic_cxr
from data_adapters.records import read_manifest
from fedtar.cli import main
from pydicom.uid import generate_uid

KEY = Pseudonymizer(b"test-site-secret-0123456789abcdef")
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
US_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
# study name: (SOP class, extra attributes, expected reason or None)
CASES = {
    "clean": (DX_STORAGE, {"ImageType": ["ORIGINAL", "PRIMARY"], "BurnedInAnnotation": "NO"}, None),
    "processed": (DX_STORAGE, {"ImageType": ["DERIVED", "PRIMARY"]}, None),
    "flagged": (DX_STORAGE, {"BurnedInAnnotation": "YES"}, "BurnedInAnnotation is YES"),
    "ultrasound": (US_STORAGE, {"Modality": "US"}, "modality US"),
    "other": (DX_STORAGE, {"Modality": "OT"}, "modality OT"),
    "capture": (SC_STORAGE, {}, "secondary-capture or photograph SOP class"),
    "derived": (DX_STORAGE, {"ImageType": ["DERIVED", "SECONDARY"]}, "ImageType DERIVED/SECONDARY"),
    "screen": (DX_STORAGE, {"ImageType": ["ORIGINAL", "PRIMARY", "SCREEN SAVE"]}, "ImageType ORIGINAL/PRIMARY/SCREEN SAVE"),
}


def _export(root):
    rows = []
    for i, (name, (sop, attrs, _)) in enumerate(CASES.items()):
        uid = generate_uid()
        values = {"PatientID": f"PID{i}", "PatientSex": "F", "PatientAge": "050Y", "StudyDate": "20200105",
                  "StudyInstanceUID": uid, "Modality": "DX", "ViewPosition": "PA", **attrs}
        stored = np.round(_picture(i) * 3000).astype(np.uint16)
        save_dicom(dicom_dataset(stored, sop, **values), root / name / "image.dcm")
        (root / "reports").mkdir(parents=True, exist_ok=True)
        (root / "reports" / f"{name}.txt").write_text("FINDINGS: Heart size is normal.\n")
        rows.append([uid, f"reports/{name}.txt"])
    with (root / "reports.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["study_instance_uid", "report_path"], *rows])


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("burned") / "export"
    _export(root)
    return root


def test_burned_in_images_are_skipped_with_their_reason(export, tmp_path):
    prepared = prepare_dicom(export, tmp_path / "out", KEY, DicomOptions(image_size=32),
                             reports_csv=export / "reports.csv")
    records = read_manifest(prepared.manifests[0]).records
    assert sorted(r.patient_id for r in records) == sorted(KEY.patient(f"PID{i}") for i in (0, 1))
    reasons = {s.path.parts[0]: s.reason for s in prepared.skipped if s.path.parts[0] in CASES}
    for name, (_, _, expected) in CASES.items():
        if expected is None:
            assert name not in reasons
        else:
            assert expected in reasons[name] and "--allow-burned-in" in reasons[name], (name, reasons.get(name))
    with (tmp_path / "out" / "skipped.csv").open() as f:
        burned = [row for row in csv.DictReader(f) if "possible burned-in text" in row["reason"]]
    assert len(burned) == 6
    assert "possible burned-in text" in prepared.summary  # counted by reason in the summary


def test_allow_burned_in_keeps_them_from_the_command_line(export, tmp_path):
    args = ["prepare", "dicom", "--root", str(export), "--out", str(tmp_path / "out"), "--reports-csv",
            str(export / "reports.csv"), "--secret", str(tmp_path / "secret"), "--image-size", "32"]
    assert main(args + ["--allow-burned-in"]) == 0
    records = read_manifest(tmp_path / "out" / "site1" / "manifest.csv").records
    assert len(records) == 6  # every DX study; US and OT are still not radiographs of the selected kind
    skipped = (tmp_path / "out" / "skipped.csv").read_text()
    assert "burned-in" not in skipped and "modality unknown not selected" in skipped


def test_the_shared_check_covers_the_mimic_dicom_path(tmp_path):
    root, patients = tmp_path / "mimic", tmp_path / "hosp"
    build_mimic(root, patients)
    dcm = next((root / "files" / "p10" / "p10000004").rglob("*pa.dcm"))
    ds = dicom_dataset(np.full((48, 48), 1000, dtype=np.uint16), DX_STORAGE, ViewPosition="PA",
                       BurnedInAnnotation="YES")
    assert burned_in_reason(ds) == "BurnedInAnnotation is YES"
    save_dicom(ds, dcm)
    with pytest.raises(BurnedInError, match="possible burned-in text"):
        read_projection(dcm)
    assert read_projection(dcm, allow_burned_in=True).shape == (48, 48)
    prepared = prepare_mimic_cxr(root, patients / "patients.csv", tmp_path / "out", KEY,
                                 MimicOptions(sites=1, image_size=32))
    assert sum("possible burned-in text" in s.reason for s in prepared.skipped) == 1
