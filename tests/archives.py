"""Miniature archives in the real formats: MIMIC-CXR(-JPG) trees, a hospital DICOM export, CT series.

Everything is written with the libraries real data comes from (Pillow JPG,
pydicom DICOM, CSVs with MIMIC's column names), so the adapters' code paths
are the ones real data takes. Each builder returns the facts a test checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from data_adapters.mimic_cxr import CHEXPERT_LABELS
from data_adapters.mimic_rehearsal import METADATA_HEADER, PATIENTS_HEADER, format_report, study_folder, write_table

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"     # Digital X-Ray Image Storage - For Presentation
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"       # CT Image Storage
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

# Tables and reports are written as the MIMIC rehearsal writes them (one way for MIMIC's layout).
_write_csv = write_table


def _picture(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    return np.clip(0.5 + 0.3 * np.sin(6 * x + seed) * np.cos(4 * y) + 0.05 * rng.standard_normal((size, size)), 0, 1)


def dicom_dataset(pixels: np.ndarray, sop_class: str, **attrs) -> Dataset:
    """A minimal valid DICOM image (16-bit unsigned, explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 16, 15, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    return ds


def save_dicom(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# --- MIMIC-CXR -------------------------------------------------------------------------------------

MIMIC_SUBJECTS = {  # subject: (gender, anchor_age, anchor_year, split) -- 10000005 is not in patients.csv
    "10000001": ("M", 50, 2180, "train"),
    "10000002": ("F", 70, 2150, "train"),
    "10000003": ("F", 30, 2120, "validate"),
    "10000004": ("M", 85, 2190, "test"),
    "10000006": ("F", 62, 2160, "train"),
    "10000007": ("M", 44, 2170, "train"),
}


def build_mimic(root: Path, patients_dir: Path) -> dict:
    """A MIMIC-CXR tree with planted faults (the rehearsal, data_adapters/mimic_rehearsal.py, writes clean ones
    at any size); subject 10000004's images are DICOM (MIMIC-CXR's DICOM release)."""
    files = root / "files"
    meta, split, chexpert = [], [], []
    studies: dict[str, list[tuple[str, str]]] = {}
    # subject -> studies (study_id, StudyDate, StudyTime), written in a scrambled order
    plan = {
        "10000001": [("50000013", "21820301", "101500.000"), ("50000011", "21810115", "083000.000"),
                     ("50000012", "21810115", "161000.500")],
        "10000002": [("50000021", "21500601", "120000"), ("50000022", "21510601", "120000"),
                     ("50000023", "21520601", "120000")],
        "10000003": [("50000031", "21200101", "090000"), ("50000032", "21200301", "090000"),
                     ("50000033", "21210101", "090000")],
        "10000004": [("50000041", "21900505", "070000"), ("50000042", "21910505", "070000")],
        "10000005": [("50000051", "21600101", "070000"), ("50000052", "21610101", "070000")],
        "10000006": [("50000061", "21600101", "070000"), ("50000062", "21600701", "070000")],
        "10000007": [("50000071", "21700101", "070000"), ("50000072", "21700801", "070000")],
    }
    seed = 0
    for subject, rows in plan.items():
        for study, date, time in rows:
            folder = study_folder(files, subject, study)
            folder.mkdir(parents=True, exist_ok=True)
            views = [("PA", "LATERAL")] if study != "50000022" else [("AP", "LL")]
            for frontal, lateral in views:
                for view in (frontal, lateral):
                    seed += 1
                    dicom_id = f"d{study}{view.lower()}"
                    if subject == "10000004":
                        stored = np.round(_picture(seed) * 4000).astype(np.uint16)
                        save_dicom(dicom_dataset(stored, DX_STORAGE, PhotometricInterpretation="MONOCHROME1",
                                                 RescaleSlope=1, RescaleIntercept=0, ViewPosition=view),
                                   folder / f"{dicom_id}.dcm")
                    else:
                        Image.fromarray((_picture(seed) * 255).astype(np.uint8)).save(folder / f"{dicom_id}.jpg")
                    meta.append([dicom_id, subject, study, "CHEST (PA AND LAT)", view, 48, 48, date, time, "", "",
                                 ""])
                    split.append([dicom_id, study, subject, MIMIC_SUBJECTS.get(subject, ("", 0, 0, "train"))[3]])
                    studies.setdefault(study, []).append((dicom_id, view))
            chexpert.append([subject, study, "1.0", "", "-1.0"] + [""] * 11)
            report = format_report(f"Heart size is normal. Study {study[-1]} shows no effusion.",
                                   "No acute cardiopulmonary process.")
            if study == "50000041":      # a report without a FINDINGS header
                report = " FINAL REPORT\n\n IMPRESSION:  Stable small left effusion.\n"
            if study == "50000023":      # no headers at all: the last paragraph is used
                report = "WET READ: ___ 2:10 PM\n\nLungs are clear. No pneumothorax.\n"
            if study != "50000033":      # one study without a report
                (folder.parent / f"s{study}.txt").write_text(report)
    # one corrupt image: the only frontal view of study 50000022 (the study is skipped)
    (files / "p10" / "p10000002" / "s50000022" / "d50000022ap.jpg").write_bytes(b"\xff\xd8\xff garbage")
    _write_csv(root / "mimic-cxr-2.0.0-metadata.csv", METADATA_HEADER, meta[::-1])   # scrambled order
    _write_csv(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], split)
    _write_csv(root / "mimic-cxr-2.0.0-chexpert.csv", ["subject_id", "study_id", *CHEXPERT_LABELS], chexpert)
    patients_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(patients_dir / "patients.csv", PATIENTS_HEADER,
               [[s, g, a, y, "2008 - 2010", ""] for s, (g, a, y, _) in MIMIC_SUBJECTS.items()])
    return {"plan": plan, "subjects": list(plan)}


# --- a hospital DICOM export ---------------------------------------------------------------------

HOSPITAL_PATIENTS = {  # PatientID: (name, birth date, sex, PatientAge)
    "MRN-884201": ("DOE^JANE", "19600310", "F", ""),
    "MRN-552910": ("ROE^RICHARD", "", "M", "072Y"),
}


def sr_dataset(study_uid: str, patient_id: str, findings: str, impression: str, **attrs) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = BASIC_TEXT_SR, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = BASIC_TEXT_SR, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.PatientID, ds.ValueType = "SR", study_uid, patient_id, "CONTAINER"
    items = []
    for heading, text in (("Findings", findings), ("Impression", impression)):
        concept = Dataset()
        concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121071", "DCM", heading
        item = Dataset()
        item.ValueType, item.ConceptNameCodeSequence, item.TextValue = "TEXT", Sequence([concept]), text
        items.append(item)
    ds.ContentSequence = Sequence(items)
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def build_hospital_export(root: Path) -> dict:
    """Two patients' chest radiographs (one MONOCHROME1), SR and text reports, a truncated file,
    a study without a report and a CT patient with an out-of-order series."""
    root.mkdir(parents=True, exist_ok=True)
    report_rows, facts = [], {"studies": {}}
    seed = 100
    dates = ["20200105", "20210220", "20220601"]
    for p_index, (pid, (name, birth, sex, age)) in enumerate(HOSPITAL_PATIENTS.items()):
        for s_index, date in enumerate(dates):
            study_uid, accession = generate_uid(), f"ACC{p_index}{s_index}77"
            common = dict(PatientID=pid, PatientName=name, PatientBirthDate=birth, PatientSex=sex, PatientAge=age,
                          StudyDate=date, StudyInstanceUID=study_uid, AccessionNumber=accession, Modality="DX",
                          InstitutionName="St Example Hospital")
            for view in ("PA", "LL"):
                seed += 1
                stored = np.round(_picture(seed) * 3000).astype(np.uint16)
                photometric = "MONOCHROME1" if p_index == 1 else "MONOCHROME2"
                save_dicom(dicom_dataset(stored, DX_STORAGE, ViewPosition=view, PhotometricInterpretation=photometric,
                                         SeriesInstanceUID=generate_uid(), RescaleSlope=1, RescaleIntercept=0,
                                         **common),
                           root / f"export{p_index}" / f"{generate_uid()}.dcm")
            findings = f"Patient {name.replace('^', ' ')} ({pid}) accession {accession}: heart size is normal."
            if (p_index, s_index) == (1, 2):
                continue  # no report for this study
            if s_index == 0:
                save_dicom(sr_dataset(study_uid, pid, findings, "No acute process.", PatientName=name,
                                      StudyDate=date, AccessionNumber=accession),
                           root / f"export{p_index}" / f"{generate_uid()}.dcm")
            else:
                path = root / "reports" / f"r{p_index}{s_index}.txt"
                path.parent.mkdir(exist_ok=True)
                path.write_text(f"FINDINGS: {findings}\n\nIMPRESSION: Stable.\n")
                key = ("", accession) if s_index == 1 else (study_uid, "")
                report_rows.append([*key, f"reports/{path.name}"])
            facts["studies"][study_uid] = (pid, date)
    # a truncated DICOM file
    good = next((root / "export0").glob("*.dcm")).read_bytes()
    (root / "export0" / "truncated.dcm").write_bytes(good[:300])  # cut inside the header
    # a CT patient: 2 exams, each series written slice by slice in reverse order
    for s_index, date in enumerate(("20190101", "20200101")):
        study_uid = generate_uid()
        write_ct_series(root / "ct" / f"exam{s_index}", study_uid, PatientID="MRN-CT-31", PatientName="POE^ED",
                        PatientSex="M", PatientAge="055Y", StudyDate=date, AccessionNumber=f"CTACC{s_index}")
        path = root / "reports" / f"ct{s_index}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text("FINDINGS: Small nodule in the right upper lobe.\nIMPRESSION: Follow up.\n")
        report_rows.append([study_uid, "", f"reports/{path.name}"])
    _write_csv(root / "reports.csv", ["study_instance_uid", "accession_number", "report_path"], report_rows)
    return facts


def ct_slice_hu(k: int) -> float:
    """The (uniform) HU value of slice k counted from the patient's feet."""
    return -1000.0 + 150.0 * k


def write_ct_series(folder: Path, study_uid: str, slices: int = 8, size: int = 16, **attrs) -> list[Path]:
    """Slices with stored = HU + 1024 (intercept -1024), z = 2.5 k mm, written in reverse order
    with file names that sort against the anatomy."""
    series_uid, paths = generate_uid(), []
    for k in reversed(range(slices)):
        stored = np.full((size, size), ct_slice_hu(k) + 1024, dtype=np.uint16)
        stored[0, 0] = stored[0, 0] + k  # distinguishes slices inside a window
        ds = dicom_dataset(stored, CT_STORAGE, Modality="CT", StudyInstanceUID=study_uid,
                           SeriesInstanceUID=series_uid, ImagePositionPatient=[0.0, 0.0, 2.5 * k],
                           ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.8, 0.8],
                           SliceThickness=2.5, RescaleSlope=1, RescaleIntercept=-1024,
                           InstanceNumber=slices - k, **attrs)
        paths.append(save_dicom(ds, folder / f"slice{slices - k:03d}.dcm"))
    return paths


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file's bytes under root (to show a source tree was not modified)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def build_ct_export(root: Path, reports_csv: Path, patients: int, exams: int = 2, slices: int = 8, size: int = 16,
                    first: int = 0) -> int:
    """A hospital's CT export under `root`: `patients` patients × `exams` studies, one series each
    (slices in reverse order), a text report per study listed in `reports_csv`. Returns the study count."""
    rows = []
    for p in range(first, first + patients):
        for e in range(exams):
            study_uid = generate_uid()
            write_ct_series(root / f"patient{p}" / f"exam{e}", study_uid, slices=slices, size=size,
                            PatientID=f"MRN-CT-{p:03d}", PatientName=f"DOE^P{p}", PatientSex="MF"[p % 2],
                            PatientAge=f"{40 + p:03d}Y", StudyDate=f"{2018 + e}0{1 + p % 9}15",
                            AccessionNumber=f"CT{p:03d}{e}")
            report = reports_csv.parent / f"{reports_csv.stem}-text" / f"p{p}e{e}.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            finding = "Small nodule in the right upper lobe." if (p + e) % 2 else "No pulmonary nodule."
            report.write_text(f"FINDINGS: {finding}\nIMPRESSION: {'Follow up.' if (p + e) % 2 else 'Normal.'}\n")
            rows.append([study_uid, "", str(report.relative_to(reports_csv.parent))])
    _write_csv(reports_csv, ["study_instance_uid", "accession_number", "report_path"], rows)
    return len(rows)
