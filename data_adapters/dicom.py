"""A hospital's DICOM export (any folder layout) to one de-identified site manifest.

Reads every file under ROOT; DICOM files are recognised by content, not name.
Per study (StudyInstanceUID):

- images: radiographs (CR, DX) with ViewPosition PA/AP by default (a study whose
  images carry no ViewPosition at all keeps them all), read with rescale,
  windowing and MONOCHROME1 handling (``dicom_io.read_projection``); CT: the
  series with the most slices, ordered along the slice normal, written as a
  NIfTI volume in HU (``dicom_io.read_ct_series``);
- report: a DICOM SR in the study (TEXT items under "Findings"/"Impression"
  headings), else a text file listed in a reports CSV with columns
  ``report_path`` and ``study_instance_uid`` or ``accession_number``;
  sections are parsed as for MIMIC-CXR;
- demographics: PatientSex; age from PatientAge (``065Y``, ``010M``...) or
  from PatientBirthDate and StudyDate.

Only pseudonyms, shifted dates, ages, sex and view reach the manifest;
report text goes through ``Pseudonymizer.scrub`` (the header's identifiers and
anything shaped like PHI become ``___``; dates move with the patient's shift). Files that are not DICOM but look like they should be
(``.dcm``, ``.dicom`` or no suffix) are skipped and reported, and so are images
that may carry burned-in text (``dicom_io.burned_in_reason``) unless
``allow_burned_in``: then the site has reviewed them itself.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from .ct import write_nifti
from .deid import Pseudonymizer, ensure_outside
from .dicom_io import DicomReadError, check_burned_in, read_ct_series, read_header, read_projection
from .mimic_cxr import FRONTAL
from .prepared import MANIFEST_FILE, PreparedData, read_table, save_png, stable_unit, write_prepared
from .records import ExamRecord, SkippedRow
from .study_jobs import JobResult, run_jobs, write_atomic
from .report_sections import extract_sections

log = logging.getLogger(__name__)
DICOM_SUFFIXES = {".dcm", ".dicom", ""}
PROJECTION_MODALITIES = {"CR", "DX", "DR"}


@dataclass
class DicomOptions:
    site_id: str = "site1"
    modality: str = "xray"          # xray (CR, DX, DR) | ct: one kind per manifest (2D images or volumes)
    views: str = "frontal"          # frontal | all
    per_study: str = "one"          # one | all
    image_size: int = 512
    date_shift_days: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, validate, test by patient
    allow_burned_in: bool = False   # keep images that may carry burned-in text (the site reviewed them)
    workers: int = 0                # processes decoding images; 0: the machine's cores


@dataclass
class _Study:
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    accession: str = ""
    sex: str = "U"
    age: str = ""
    date: str = ""
    modality: str = ""
    projections: list[tuple[Path, str]] = field(default_factory=list)  # (file, ViewPosition)
    series: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))
    sr_text: str = ""


def _sr_text(ds: pydicom.Dataset) -> str:
    """TEXT content items of an SR, each under its heading (e.g. 'FINDINGS: ...')."""
    parts: list[str] = []

    def walk(items, heading: str) -> None:
        for item in items:
            name = heading
            if item.get("ConceptNameCodeSequence"):
                name = str(item.ConceptNameCodeSequence[0].get("CodeMeaning", heading))
            if item.get("ValueType") == "TEXT" and item.get("TextValue"):
                parts.append(f"{name.upper()}: {item.TextValue}")
            if item.get("ContentSequence"):
                walk(item.ContentSequence, name)

    walk(ds.get("ContentSequence", []), "FINDINGS")
    return "\n".join(parts)


def _age(study: _Study) -> float:
    if study.age:
        unit, value = study.age[-1].upper(), float(study.age[:-1])
        return value / {"Y": 1, "M": 12, "W": 52.1775, "D": 365.25}[unit]
    born = dt.datetime.strptime(study.birth_date, "%Y%m%d").date()
    return (dt.datetime.strptime(study.date, "%Y%m%d").date() - born).days / 365.25


def _scan(root: Path, skip, allow_burned_in: bool = False) -> dict[str, _Study]:
    studies: dict[str, _Study] = defaultdict(_Study)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        try:
            ds = read_header(path)
        except DicomReadError:
            if path.suffix.lower() in DICOM_SUFFIXES:
                skip(rel, 0, "not a readable DICOM file (corrupt or truncated)")
            continue
        uid, pid = str(ds.get("StudyInstanceUID", "")), str(ds.get("PatientID", ""))
        if not uid or not pid:
            skip(rel, 0, "DICOM without StudyInstanceUID or PatientID (truncated or incomplete header)")
            continue
        st = studies[uid]
        # Files of a study may carry different subsets of the patient module (an SR often less).
        st.patient_id = pid
        st.patient_name = str(ds.get("PatientName", "") or st.patient_name)
        st.birth_date = str(ds.get("PatientBirthDate", "") or st.birth_date)
        st.accession = str(ds.get("AccessionNumber", "") or st.accession)
        st.sex = (str(ds.get("PatientSex", "") or st.sex).upper()[:1]) or "U"
        st.age, st.date = str(ds.get("PatientAge", "") or st.age), str(ds.get("StudyDate", "") or st.date)
        modality = str(ds.get("Modality", "")).upper()
        if modality != "SR":
            try:
                check_burned_in(ds, rel, allow_burned_in)
            except DicomReadError as e:
                skip(rel, 0, str(e).split(": ", 1)[-1])
                continue
        if modality == "SR":
            st.sr_text = _sr_text(pydicom.dcmread(path))
        elif modality in PROJECTION_MODALITIES:
            st.modality = st.modality or modality
            st.projections.append((path, str(ds.get("ViewPosition", "")).upper()))
        elif modality == "CT":
            st.modality = "CT"
            st.series[str(ds.get("SeriesInstanceUID", ""))].append(path)
    return studies


def _text_reports(reports_csv: Path | None) -> tuple[dict[str, Path], dict[str, Path]]:
    by_uid: dict[str, Path] = {}
    by_accession: dict[str, Path] = {}
    if reports_csv is None:
        return by_uid, by_accession
    for _, row in read_table(reports_csv, ("report_path",)):
        target = reports_csv.parent / row["report_path"].strip()
        if (row.get("study_instance_uid") or "").strip():
            by_uid[row["study_instance_uid"].strip()] = target
        if (row.get("accession_number") or "").strip():
            by_accession[row["accession_number"].strip()] = target
    return by_uid, by_accession


def prepare_dicom(root: str | Path, out: str | Path, pseudonymizer: Pseudonymizer,
                  opts: DicomOptions = DicomOptions(), reports_csv: str | Path | None = None,
                  progress: bool = False) -> PreparedData:
    """One de-identified site manifest; images decoded by a process pool, resumable (data_adapters.study_jobs)."""
    root, out = Path(root), Path(out).resolve()
    ensure_outside(root, out)
    reports_csv = Path(reports_csv) if reports_csv else None
    skipped: list[SkippedRow] = []

    def skip(path: Path, line: int, reason: str) -> None:
        skipped.append(SkippedRow(path, line, reason))

    studies = _scan(root, skip, opts.allow_burned_in)
    by_uid, by_accession = _text_reports(reports_csv)
    site_dir = out / opts.site_id
    records: list[ExamRecord] = []
    jobs: list[_DicomJob] = []
    wanted = {"xray": set(PROJECTION_MODALITIES), "ct": {"CT"}}.get(opts.modality)
    if wanted is None:
        raise ValueError(f"modality must be xray or ct, got {opts.modality!r}")
    for uid, st in studies.items():
        pseudo, pseudo_study = pseudonymizer.patient(st.patient_id), pseudonymizer.study(uid)
        where = Path(f"study {pseudo_study}")
        if st.modality not in wanted:
            skip(where, 0, f"modality {st.modality or 'unknown'} not selected (modality = {opts.modality})")
            continue
        try:
            study_date = dt.datetime.strptime(st.date, "%Y%m%d").date()
            age = _age(st)
        except (ValueError, KeyError, IndexError):
            skip(where, 0, "missing or unparsable StudyDate, PatientAge or PatientBirthDate")
            continue
        text = st.sr_text
        report_file = by_uid.get(uid) or by_accession.get(st.accession)
        if not text and report_file is not None:
            if not report_file.is_file():
                skip(where, 0, f"report file listed in {reports_csv.name} is missing")
                continue
            text = report_file.read_text(encoding="utf-8", errors="replace")
        if not text:
            skip(where, 0, "no report (no SR in the study, not in the reports CSV)")
            continue
        identifiers = (st.patient_name, st.accession, st.birth_date)
        sections = extract_sections(text)
        findings, impression = (pseudonymizer.scrub(t, st.patient_id, identifiers)
                                for t in (sections.findings, sections.impression))
        if not findings and not impression:
            skip(where, 0, "report without findings or impression")
            continue
        u = stable_unit(pseudo, "split")
        split = "train" if u < opts.split[0] else "validate" if u < opts.split[0] + opts.split[1] else "test"
        records.append(ExamRecord(
            site_id=opts.site_id, patient_id=pseudo, visit_index=0,
            study_date=pseudonymizer.shift(st.patient_id, study_date), days_since_prior=0, age=round(age, 2),
            sex=st.sex if st.sex in "MFO" else "U", image_paths=[], findings=findings, impression=impression,
            split=split, extras={"modality": st.modality, "view": ""},
        ))
        jobs.append(_DicomJob(pseudo_study, st, str(out), f"{opts.site_id}/images/{pseudo}", opts, str(root)))
    fingerprint = {"adapter": "dicom", "root": str(root.resolve()), "site_id": opts.site_id,
                   "modality": opts.modality, "views": opts.views, "per_study": opts.per_study,
                   "image_size": opts.image_size, "allow_burned_in": opts.allow_burned_in,
                   "pseudonyms": pseudonymizer.study("\x00journal")}
    results = run_jobs(out, jobs, _write_study, fingerprint, opts.workers, progress,
                       images_per_job=lambda j: len(j.study.projections) if opts.per_study == "all" else 1)
    kept = []
    for record, result in zip(records, results):
        skipped.extend(SkippedRow(Path(source), line, reason) for source, line, reason in result.skips)
        if result.images:
            record.image_paths = [out / rel for rel in result.images]
            record.extras["view"] = result.views[0]
            kept.append(record)
    records = kept
    prepared = write_prepared(out, {opts.site_id: records}, skipped)
    prepared.manifests = [site_dir / MANIFEST_FILE] if records else []
    return prepared


@dataclass
class _DicomJob:
    key: str            # the study's pseudonym
    study: _Study
    out: str
    folder: str         # relative to out
    opts: DicomOptions
    root: str


def _write_study(job: _DicomJob) -> JobResult:
    """One study's images or CT volume (in a worker process)."""
    result = JobResult(job.key)
    skip = lambda path, line, reason: result.skips.append((str(path), line, reason))  # noqa: E731
    out = Path(job.out)
    images, view = _write_images(job.study, out / job.folder, job.key, job.opts, Path(job.root), skip)
    result.images = [p.relative_to(out).as_posix() for p in images]
    result.views = [view] * len(images)
    return result


def _write_images(st: _Study, folder: Path, pseudo_study: str, opts: DicomOptions, root: Path, skip
                  ) -> tuple[list[Path], str]:
    """The study's written images and the view of the first one."""
    where = Path(f"study {pseudo_study}")
    if st.modality == "CT":
        uid, files = max(st.series.items(), key=lambda kv: len(kv[1]))
        try:
            volume = read_ct_series(files)
            return [write_atomic(folder / f"{pseudo_study}.nii.gz", lambda tmp: write_nifti(volume, tmp))], ""
        except DicomReadError as e:
            skip(where, 0, f"CT series unreadable: {str(e).replace(str(root), '')}")
            return [], ""
    has_views = any(v for _, v in st.projections)
    chosen = [(p, v) for p, v in st.projections if opts.views == "all" or not has_views or v in FRONTAL]
    chosen.sort(key=lambda pv: (FRONTAL.index(pv[1]) if pv[1] in FRONTAL else len(FRONTAL), str(pv[0])))
    if not chosen:
        skip(where, 0, f"no {opts.views} view")
    images: list[Path] = []
    views: list[str] = []
    for path, view in chosen:
        try:
            pixels = read_projection(path, allow_burned_in=opts.allow_burned_in)
        except DicomReadError as e:
            skip(path.relative_to(root), 0, str(e).split(": ", 1)[-1])
            continue
        images.append(write_atomic(folder / f"{pseudo_study}-{len(images) + 1}.png",
                                   lambda tmp: save_png(pixels, tmp, opts.image_size)))
        views.append(view)
        if opts.per_study == "one":
            break
    return images, views[0] if views else ""
