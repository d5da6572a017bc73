"""The canonical exam record and the per-site manifest file.

Every data source (synthetic, MIMIC-CXR, a hospital DICOM export) is turned
into rows of one CSV manifest per site, stored next to the images. Everything
downstream reads only manifests, so a new adapter only has to write one.

Manifest columns (UTF-8 CSV, header required, one row per exam):

=================  ==========================================================
site_id            site identifier (string)
patient_id         pseudonymous patient identifier (string, site-local)
visit_index        1..T by study date (recomputed on load; kept for humans)
study_date         ISO date YYYY-MM-DD
days_since_prior   days since the patient's previous exam (0 for the first)
age                age at exam in years (float)
sex                M, F, O (other) or U (unknown)
extras             JSON object of further site-free features, e.g. view
image_paths        ';'-separated image paths, relative to the manifest
findings           FINDINGS section text
impression         IMPRESSION section text
labels             JSON {observation: severity 0-3} (optional, may be "{}")
changes            JSON {observation: change class} vs prior (optional)
split              train, validate or test
=================  ==========================================================
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_COLUMNS: tuple[str, ...] = (
    "site_id",
    "patient_id",
    "visit_index",
    "study_date",
    "days_since_prior",
    "age",
    "sex",
    "extras",
    "image_paths",
    "findings",
    "impression",
    "labels",
    "changes",
    "split",
)
SEX_VALUES: dict[str, str] = {
    "m": "M", "male": "M", "f": "F", "female": "F",
    "o": "O", "other": "O", "u": "U", "unknown": "U",
}
SPLITS: tuple[str, ...] = ("train", "validate", "test")
FEDERATION_FILE = "federation.json"  # a federation folder's list of site manifests


class ManifestError(ValueError):
    """A manifest that cannot be used at all (unreadable file, missing columns)."""


@dataclass(slots=True)  # no per-record __dict__: ~0.7 KB less per exam at MIMIC's 227k studies
class ExamRecord:
    site_id: str
    patient_id: str
    visit_index: int
    study_date: dt.date
    days_since_prior: int
    age: float
    sex: str
    image_paths: list[Path]
    findings: str
    impression: str
    split: str = "train"
    extras: dict[str, float | str] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    changes: dict[str, str] = field(default_factory=dict)
    line: int = 0  # line in the source manifest, for error messages (not written)

    def report(self, section: str = "findings") -> str:
        """The target text: 'findings', 'impression' or 'both' (findings first)."""
        if section == "findings":
            return self.findings or self.impression
        if section == "impression":
            return self.impression or self.findings
        return " ".join(s for s in (self.findings, self.impression) if s)


@dataclass(frozen=True)
class SkippedRow:
    """A row left out of a run, with the file, its line and the reason."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}" if self.line else f"{self.path}: {self.reason}"


@dataclass
class Manifest:
    path: Path
    records: list[ExamRecord]
    skipped: list[SkippedRow]


def _parse_row(row: dict[str, str], base: Path) -> ExamRecord:
    """One CSV row to a record; raises ValueError with a human-readable reason."""
    try:
        study_date = dt.date.fromisoformat(row["study_date"].strip())
    except ValueError:
        raise ValueError(f"unparsable study_date {row['study_date']!r} (want YYYY-MM-DD)") from None
    sex = SEX_VALUES.get(row["sex"].strip().lower())
    if sex is None:
        raise ValueError(f"unknown sex value {row['sex']!r} (want one of M, F, O, U)")
    try:
        age = float(row["age"])
    except ValueError:
        raise ValueError(f"unparsable age {row['age']!r}") from None
    if not 0 <= age < 130:
        raise ValueError(f"age {age} out of range")
    findings, impression = row["findings"].strip(), row["impression"].strip()
    if not findings and not impression:
        raise ValueError("empty report (no findings and no impression)")
    paths = [base / p.strip() for p in row["image_paths"].split(";") if p.strip()]
    if not paths:
        raise ValueError("no image path")
    for p in paths:
        if not _inside(p, base):
            raise ValueError(f"image path {p} is outside the manifest's folder {base} (images must lie under it)")
        if not p.is_file():
            raise ValueError(f"missing image {p}")
    split = row["split"].strip() or "train"
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (want one of {', '.join(SPLITS)})")
    try:
        extras = json.loads(row["extras"] or "{}")
        labels = {k: int(v) for k, v in json.loads(row["labels"] or "{}").items()}
        changes = json.loads(row["changes"] or "{}")
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"malformed JSON in extras/labels/changes: {e}") from None
    if bad := {k: v for k, v in labels.items() if not -100 <= v <= 100}:
        raise ValueError(f"label value(s) out of range -100..100: {bad}")
    return ExamRecord(
        # Interned: one string per site, patient and split, not one per row.
        site_id=sys.intern(row["site_id"].strip()),
        patient_id=sys.intern(row["patient_id"].strip()),
        visit_index=int(row["visit_index"] or 0),
        study_date=study_date,
        days_since_prior=int(row["days_since_prior"] or 0),
        age=age,
        sex=sex,
        image_paths=paths,
        findings=findings,
        impression=impression,
        split=sys.intern(split),
        extras=extras,
        labels=labels,
        changes=changes,
    )


def _inside(path: Path, base: Path) -> bool:
    """Lexically under `base` (no '..' out of it, not absolute elsewhere); symlinks inside are the site's choice."""
    root = os.path.normpath(os.path.abspath(base))
    return os.path.normpath(os.path.abspath(path)).startswith(root + os.sep)


def _rows(path: Path, f, skipped: list[SkippedRow]) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) per CSV row; a row the csv module cannot parse (a field over its size limit)
    is skipped with its line, and reading goes on."""
    reader = csv.reader(f)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            skipped.append(SkippedRow(path, reader.line_num, f"unparsable CSV row: {e}"))
            continue
        yield reader.line_num, fields


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest; bad rows are skipped and listed (a row with bytes that are not UTF-8, a field
    over the csv size limit or a repeat of an earlier exam, the first kept, included), a bad file
    (unreadable, no header, missing columns) raises. A UTF-8 byte-order mark is read as UTF-8."""
    path = Path(path)
    records: list[ExamRecord] = []
    skipped: list[SkippedRow] = []
    seen: dict[tuple, int] = {}  # (site, patient, study date, images) -> first line
    try:
        # surrogateescape: a byte that is not UTF-8 spoils its row only (found below), not the file;
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name.
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            rows = _rows(path, f, skipped)
            header = next(rows, (0, []))[1]
            if _has_bad_bytes(header):
                raise ManifestError(f"{path}: the header line is not UTF-8")
            missing = [c for c in MANIFEST_COLUMNS if c not in header]
            if missing:
                raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
            for line, fields in rows:
                if not fields:
                    continue
                if len(fields) != len(header):
                    skipped.append(SkippedRow(path, line, f"wrong number of fields ({len(fields)}, the header has "
                                                          f"{len(header)})"))
                    continue
                row = dict(zip(header, fields))
                bad = [k for k, v in row.items() if _has_bad_bytes(v)]
                if bad:
                    skipped.append(SkippedRow(path, line, f"bytes that are not UTF-8 in column(s) {', '.join(bad)}"))
                    continue
                try:
                    record = _parse_row(row, path.parent)
                except (ValueError, KeyError) as e:
                    skipped.append(SkippedRow(path, line, str(e)))
                    continue
                key = (record.site_id, record.patient_id, record.study_date, tuple(record.image_paths))
                first = seen.setdefault(key, line)
                if first != line:  # the same exam twice (a pasted block, a re-run export): the first is kept
                    skipped.append(SkippedRow(path, line, f"duplicate of line {first} (same site, patient, "
                                                          "study date and images)"))
                    continue
                record.line = line
                records.append(record)
    except OSError as e:
        raise ManifestError(f"{path}: cannot read manifest: {e}") from e
    return Manifest(path=path, records=assign_visits(records), skipped=skipped)


def _has_bad_bytes(text: str | list[str]) -> bool:
    items = [text] if isinstance(text, str) else text
    return any("\udc80" <= ch <= "\udcff" for t in items for ch in t)


def log_skips(log: logging.Logger, origin: str | Path, skipped: list[SkippedRow], shown: int = 5) -> None:
    """A count and the first few skips at WARNING, each of the others at DEBUG (-v)."""
    if not skipped:
        return
    more = f" (first {shown}; -v lists all)" if len(skipped) > shown else ""
    log.warning("%s: skipped %d row(s)%s:\n  %s", origin, len(skipped), more,
                "\n  ".join(str(s) for s in skipped[:shown]))
    for s in skipped[shown:]:
        log.debug("skipped %s", s)


def assign_visits(records: list[ExamRecord]) -> list[ExamRecord]:
    """Order each patient's exams by date and recompute visit index and gaps.

    Done after bad rows are dropped, so a skipped exam never leaves a hole
    in a patient's sequence.
    """
    by_patient: dict[tuple[str, str], list[ExamRecord]] = {}
    for r in records:
        by_patient.setdefault((r.site_id, r.patient_id), []).append(r)
    ordered: list[ExamRecord] = []
    for exams in by_patient.values():
        exams.sort(key=lambda r: r.study_date)
        for i, r in enumerate(exams):
            r.visit_index = i + 1
            r.days_since_prior = (r.study_date - exams[i - 1].study_date).days if i else 0
        ordered.extend(exams)
    return ordered


def write_manifest(path: str | Path, records: list[ExamRecord]) -> None:
    """Write records with image paths relative to the manifest's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({
                "site_id": r.site_id,
                "patient_id": r.patient_id,
                "visit_index": r.visit_index,
                "study_date": r.study_date.isoformat(),
                "days_since_prior": r.days_since_prior,
                "age": f"{r.age:g}",
                "sex": r.sex,
                "extras": json.dumps(r.extras, sort_keys=True),
                "image_paths": ";".join(
                    Path(p).relative_to(path.parent).as_posix() if Path(p).is_absolute() else Path(p).as_posix()
                    for p in r.image_paths
                ),
                "findings": r.findings,
                "impression": r.impression,
                "labels": json.dumps(r.labels, sort_keys=True),
                "changes": json.dumps(r.changes, sort_keys=True),
                "split": r.split,
            })


def find_manifests(spec: str | Path) -> list[Path]:
    """Site manifests from a federation folder (its federation.json, else its */manifest.csv,
    in name order) or from a comma-separated list of manifest files."""
    text = str(spec)
    if "," in text or text.endswith(".csv"):
        paths = [Path(p.strip()) for p in text.split(",") if p.strip()]
    else:
        root = Path(text)
        if (root / FEDERATION_FILE).is_file():
            paths = [root / m for m in json.loads((root / FEDERATION_FILE).read_text())["manifests"]]
        else:
            paths = sorted(root.glob("*/manifest.csv"))
            if not paths:
                raise FileNotFoundError(f"{root}: no {FEDERATION_FILE} and no */manifest.csv: not a federation folder")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"manifest(s) not found: {', '.join(missing)}")
    return paths
