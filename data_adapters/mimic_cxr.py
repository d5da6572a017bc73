"""MIMIC-CXR (JPG or DICOM release) to de-identified per-site manifests.

Inputs, as PhysioNet distributes them (``.csv`` or ``.csv.gz``)::

    ROOT/mimic-cxr-2.0.0-metadata.csv   dicom_id, subject_id, study_id, ViewPosition, StudyDate, StudyTime
    ROOT/mimic-cxr-2.0.0-split.csv      dicom_id, study_id, subject_id, split (train / validate / test)
    ROOT/mimic-cxr-2.0.0-chexpert.csv   subject_id, study_id, 14 CheXpert columns (optional)
    ROOT/files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg  (or .dcm, MIMIC-CXR's DICOM tree)
    REPORTS/files/pXX/pSUBJECT/sSTUDY.txt        (REPORTS defaults to ROOT)
    PATIENTS = MIMIC-IV hosp/patients.csv   subject_id, gender, anchor_age, anchor_year

Age at exam: MIMIC shifts every date of a subject by one offset into the future
and gives ``anchor_age``, the subject's age in ``anchor_year`` of that shifted
timeline. So ``age = anchor_age + (year(StudyDate) - anchor_year)``, exact to
the year (MIMIC-IV caps ages above 89 at 91; we keep that value).

Visits: a subject's studies ordered by StudyDate then StudyTime. Views: frontal
(PA preferred, then AP) by default; ``views="all"`` keeps laterals too
(frontal first: the loader encodes the first image). Labels: CheXpert 1 ->
2 (present), -1 -> 1 (uncertain), 0 -> 0, blank -> unknown. The official
split is kept per study. Every subject (whatever its split) goes to one site:

- ``iid``: by a hash of the subject id (seeded);
- ``demographic``: subjects grouped by sex x age band (<40, 40-59, 60-79, 80+);
  each group spread over the sites by proportions drawn from Dirichlet(alpha);
- ``year``: subjects ordered by their first study date, cut into K blocks of
  equal size (site 1 the earliest): temporal drift between sites.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .deid import Pseudonymizer, ensure_outside
from .dicom_io import DicomReadError, read_projection
from .prepared import PreparedData, read_table, save_png, stable_unit, write_prepared
from .study_jobs import JobResult, run_jobs, write_atomic
from .records import ExamRecord, SkippedRow
from .report_sections import extract_sections

log = logging.getLogger(__name__)

METADATA, SPLIT, CHEXPERT = "mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-chexpert.csv"
CHEXPERT_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
                   "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other",
                   "Pneumonia", "Pneumothorax", "Support Devices")
FRONTAL = ("PA", "AP")
PARTITIONS = ("iid", "demographic", "year")
AGE_BANDS = (40, 60, 80)


@dataclass
class MimicOptions:
    sites: int = 4
    partition: str = "iid"          # iid | demographic | year
    dirichlet_alpha: float = 0.5    # demographic skew: smaller = more skewed
    views: str = "frontal"          # frontal | all
    per_study: str = "one"          # one | all images of the chosen views
    image_size: int = 512           # longer side of the written PNG (0: keep)
    date_shift_days: int = 0        # extra keyed shift per subject (MIMIC is shifted already)
    seed: int = 0
    workers: int = 0                # processes decoding images; 0: the machine's cores


@dataclass
class _Study:
    subject: str
    study: str
    date: dt.datetime
    line: int
    images: list[tuple[str, str]]   # (dicom_id, ViewPosition)


def _image_path(files: Path, subject: str, study: str, dicom_id: str) -> Path | None:
    folder = files / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
    for suffix in (".jpg", ".dcm", ".png"):
        if (folder / f"{dicom_id}{suffix}").is_file():
            return folder / f"{dicom_id}{suffix}"
    return None


def _load_image(path: Path) -> np.ndarray:
    if path.suffix == ".dcm":
        return read_projection(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot decode image ({type(e).__name__})") from None


def _study_datetime(date: str, time: str) -> dt.datetime:
    day = dt.datetime.strptime(date.strip(), "%Y%m%d")
    seconds = float(time) if time and time.strip() else 0.0
    return day + dt.timedelta(seconds=int(seconds // 10000) * 3600 + int(seconds // 100 % 100) * 60
                              + seconds % 100)


def _chexpert(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    return {1: 2, -1: 1, 0: 0}.get(int(float(value)))


def _partition(subjects: dict[str, tuple[str, float, dt.datetime]], opts: MimicOptions) -> dict[str, int]:
    """subject -> site index; every subject at exactly one site."""
    k = opts.sites
    if opts.partition == "iid":
        return {s: int(stable_unit(s, f"site{opts.seed}") * k) for s in subjects}
    if opts.partition == "year":
        ordered = sorted(subjects, key=lambda s: (subjects[s][2], stable_unit(s)))
        return {s: i * k // max(len(ordered), 1) for i, s in enumerate(ordered)}
    if opts.partition == "demographic":
        rng = np.random.default_rng(opts.seed)
        groups: dict[tuple[str, int], list[str]] = defaultdict(list)
        for s, (sex, age, _) in sorted(subjects.items()):
            groups[(sex, int(np.searchsorted(AGE_BANDS, age, side="right")))].append(s)
        site_of = {}
        for key in sorted(groups):
            members = sorted(groups[key], key=lambda s: stable_unit(s, f"order{opts.seed}"))
            shares = rng.dirichlet([opts.dirichlet_alpha] * k)
            cuts = np.floor(np.cumsum(shares) * len(members) + 0.5).astype(int)
            for i, s in enumerate(members):
                site_of[s] = min(int(np.searchsorted(cuts, i, side="right")), k - 1)
        return site_of
    raise ValueError(f"unknown partition {opts.partition!r} (want one of {', '.join(PARTITIONS)})")


def prepare_mimic_cxr(root: str | Path, patients: str | Path, out: str | Path, pseudonymizer: Pseudonymizer,
                      opts: MimicOptions = MimicOptions(), reports: str | Path | None = None,
                      progress: bool = False) -> PreparedData:
    """Write de-identified site manifests and PNGs under OUT (resumable: see data_adapters.study_jobs)."""
    root, out = Path(root), Path(out).resolve()
    reports_root = Path(reports) if reports else root
    for source in {root, reports_root, Path(patients).parent}:
        ensure_outside(source, out)
    if opts.views not in ("frontal", "all") or opts.per_study not in ("one", "all"):
        raise ValueError("views must be frontal or all, per_study one or all")
    if opts.sites < 1:
        raise ValueError(f"--sites must be at least 1, got {opts.sites}")
    skipped: list[SkippedRow] = []

    def skip(path: Path, line: int, reason: str) -> None:
        skipped.append(SkippedRow(Path(path.name), line, reason))

    people: dict[str, tuple[str, int, int]] = {}
    patients_path = Path(patients)
    for line, row in read_table(patients_path, ("subject_id", "gender", "anchor_age", "anchor_year")):
        try:
            people[row["subject_id"].strip()] = (row["gender"].strip().upper()[:1] or "U",
                                                 int(row["anchor_age"]), int(row["anchor_year"]))
        except (ValueError, TypeError):
            skip(patients_path, line, "unparsable anchor_age or anchor_year")
    split_of: dict[str, str] = {}
    split_path = root / SPLIT
    for line, row in read_table(split_path, ("dicom_id", "study_id", "split")):
        split_of[row["dicom_id"].strip()] = (row["split"] or "").strip()
    labels_of: dict[str, dict[str, int]] = {}
    if (root / CHEXPERT).is_file() or (root / f"{CHEXPERT}.gz").is_file():
        for line, row in read_table(root / CHEXPERT, ("study_id",)):
            try:
                values = {name.lower().replace(" ", "_"): _chexpert(row.get(name) or "") for name in CHEXPERT_LABELS}
            except (ValueError, TypeError):
                skip(root / CHEXPERT, line, "unparsable CheXpert value")
                continue
            labels_of[row["study_id"].strip()] = {k: v for k, v in values.items() if v is not None}

    meta_path = root / METADATA
    studies: dict[str, _Study] = {}
    for line, row in read_table(meta_path, ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate",
                                            "StudyTime")):
        subject, study = row["subject_id"].strip(), row["study_id"].strip()
        try:
            when = _study_datetime(row["StudyDate"], row["StudyTime"])
        except (ValueError, TypeError):
            skip(meta_path, line, f"unparsable StudyDate/StudyTime {row['StudyDate']!r} {row['StudyTime']!r}")
            continue
        entry = studies.setdefault(study, _Study(subject, study, when, line, []))
        entry.images.append((row["dicom_id"].strip(), (row["ViewPosition"] or "").strip().upper()))

    # Plan every study from the tables first (all skips that need no image happen here, inside the loop),
    # then place subjects on sites, then decode and write the images straight under their final names.
    planned: list[tuple[_Study, ExamRecord, _ImageJob]] = []
    reports: list[tuple[str, str, str, str]] = []  # per planned study: findings, impression, subject, study
    for st in sorted(studies.values(), key=lambda s: s.line):
        pseudo_study = pseudonymizer.study(st.study)
        where = f"(study {pseudo_study})"
        if st.subject not in people:
            skip(meta_path, st.line, f"subject not in {patients_path.name} {where}")
            continue
        views = [(d, v) for d, v in st.images if opts.views == "all" or v in FRONTAL]
        views.sort(key=lambda dv: (FRONTAL.index(dv[1]) if dv[1] in FRONTAL else len(FRONTAL), dv[0]))
        if not views:
            skip(meta_path, st.line, f"no {opts.views} view {where}")
            continue
        report_path = reports_root / "files" / f"p{st.subject[:2]}" / f"p{st.subject}" / f"s{st.study}.txt"
        if not report_path.is_file():
            skip(meta_path, st.line, f"no report file {where}")
            continue
        sections = extract_sections(report_path.read_text(encoding="utf-8", errors="replace"))
        if not sections.findings and not sections.impression:
            skip(meta_path, st.line, f"report without findings or impression {where}")
            continue
        split = split_of.get(views[0][0]) or next((split_of[d] for d, _ in views if d in split_of), "")
        if split not in ("train", "validate", "test"):
            skip(meta_path, st.line, f"not in {SPLIT} {where}")
            continue
        sex, anchor_age, anchor_year = people[st.subject]
        pseudo = pseudonymizer.patient(st.subject)
        record = ExamRecord(
            site_id="", patient_id=pseudo, visit_index=0,
            study_date=pseudonymizer.shift(st.subject, st.date.date()), days_since_prior=0,
            age=float(anchor_age + st.date.year - anchor_year), sex=sex if sex in "MF" else "U",
            image_paths=[], findings="", impression="", split=split,  # scrubbed text is filled in below
            extras={"view": views[0][1]}, labels=labels_of.get(st.study, {}),
        )
        reports.append((sections.findings, sections.impression, st.subject, st.study))
        sources = tuple(str(p) if (p := _image_path(root / "files", st.subject, st.study, d)) else ""
                        for d, _ in views)
        planned.append((st, record, _ImageJob(pseudo_study, sources, str(out), "", f"{pseudo}/{pseudo_study}",
                                              opts.image_size, opts.per_study, meta_path.name, st.line)))

    first: dict[str, tuple[str, float, dt.date]] = {}  # subject -> sex, youngest age, earliest date
    for st, record, _ in planned:
        sex, age, date = first.get(st.subject, (people[st.subject][0], record.age, record.study_date))
        first[st.subject] = (sex, min(age, record.age), min(date, record.study_date))
    site_of = _partition(first, opts)
    jobs = []
    for st, record, job in planned:
        record.site_id = f"site{site_of[st.subject] + 1}"
        job.site = record.site_id
        jobs.append(job)
    fingerprint = {"adapter": "mimic-cxr", "root": str(root.resolve()), "image_size": opts.image_size,
                   "views": opts.views, "per_study": opts.per_study, "sites": opts.sites,
                   "partition": opts.partition, "seed": opts.seed, "alpha": opts.dirichlet_alpha,
                   "pseudonyms": pseudonymizer.study("\x00journal")}
    # Scrubbing the reports is most of what the parent does: it runs in a thread while the workers write
    # images (the regexes hold this interpreter's lock, the wait on the pool does not). Same text at any count.
    # A failed or interrupted prepare stops the thread too (at MIMIC size it has minutes of text left).
    stop = threading.Event()
    with ThreadPoolExecutor(1) as scrubber:
        scrubbed = scrubber.submit(_scrub_reports, reports, pseudonymizer, stop)
        try:
            results = run_jobs(out, jobs, _write_study, fingerprint, opts.workers, progress,
                               images_per_job=lambda j: 1 if j.per_study == "one" else len(j.sources))
        except BaseException:
            stop.set()
            raise
        for (_, record, _), (findings, impression) in zip(planned, scrubbed.result()):
            record.findings, record.impression = findings, impression

    records_by_subject: dict[str, list[ExamRecord]] = defaultdict(list)
    when: dict[int, dt.datetime] = {}  # id(record) -> StudyDate and StudyTime, for the visit order
    for (st, record, _), result in zip(planned, results):
        skipped.extend(SkippedRow(Path(source), line, reason) for source, line, reason in result.skips)
        if not result.images:
            continue
        record.image_paths = [out / rel for rel in result.images]
        records_by_subject[st.subject].append(record)
        when[id(record)] = st.date
    sites: dict[str, list[ExamRecord]] = {f"site{i + 1}": [] for i in range(opts.sites)}
    for records in records_by_subject.values():
        records.sort(key=lambda r: when[id(r)])
        sites[records[0].site_id].extend(records)
    return write_prepared(out, sites, skipped)


def _scrub_reports(reports: list[tuple[str, str, str, str]], pseudonymizer: Pseudonymizer,
                   stop: threading.Event) -> list[tuple[str, str]]:
    """Findings and impression of each report without PHI (the study id counts as an identifier)."""
    scrubbed = []
    for findings, impression, subject, study in reports:
        if stop.is_set():
            break
        scrubbed.append((pseudonymizer.scrub(findings, subject, (study,)),
                         pseudonymizer.scrub(impression, subject, (study,))))
    return scrubbed


@dataclass
class _ImageJob:
    """One study's images: candidate sources in preference order ("" where the file is missing)."""

    key: str              # the study's pseudonym
    sources: tuple[str, ...]
    out: str
    site: str
    name: str             # P<patient>/S<study>: images become OUT/site/images/name-k.png
    image_size: int
    per_study: str
    table: str            # skip reasons point at this table's line
    line: int


def _write_study(job: _ImageJob) -> JobResult:
    """Decode the study's images and write them as PNGs (in a worker process)."""
    result = JobResult(job.key)
    where = f"(study {job.key})"
    for src in job.sources:
        if not src:
            result.skips.append((job.table, job.line, f"image {len(result.images) + 1} missing {where}"))
            continue
        try:
            pixels = _load_image(Path(src))
        except (ValueError, DicomReadError) as e:
            result.skips.append((job.table, job.line, f"unreadable image {where}: {str(e).split(': ')[-1]}"))
            continue
        rel = f"{job.site}/images/{job.name}-{len(result.images) + 1}.png"
        write_atomic(Path(job.out) / rel, lambda tmp: save_png(pixels, tmp, job.image_size))
        result.images.append(rel)
        if job.per_study == "one":
            break
    return result
