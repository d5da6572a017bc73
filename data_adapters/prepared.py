"""What every `fedtar prepare` writes: de-identified images, site manifests, a skip report.

Output layout (never inside the source archive)::

    OUT/site1/manifest.csv      one manifest per site (data_adapters.records)
    OUT/site1/images/P<pseudonym>/S<pseudonym>-<k>.png   (or .nii.gz for CT)
    OUT/federation.json         the list of manifests (a federation folder)
    OUT/skipped.csv             source file, line or item, reason (stays at the site)
    OUT/summary.txt             patients, studies, visits per patient, skips by reason

Images are re-encoded (8-bit PNG for radiographs, NIfTI in HU for CT) under
pseudonymous names, so no source path, UID or header travels with a manifest.
"""

from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .records import FEDERATION_FILE, ExamRecord, SkippedRow, assign_visits, write_manifest

log = logging.getLogger(__name__)
SKIPPED_FILE, SUMMARY_FILE, MANIFEST_FILE = "skipped.csv", "summary.txt", "manifest.csv"


@dataclass
class PreparedData:
    manifests: list[Path]
    skipped: list[SkippedRow] = field(default_factory=list)
    summary: str = ""


def read_table(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line, row) pairs of a CSV (or .csv.gz); a missing file or column is an error naming it."""
    if not path.is_file() and Path(f"{path}.gz").is_file():
        path = Path(f"{path}.gz")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        return [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as e:
        raise ValueError(f"{path}: cannot read CSV: {type(e).__name__}: {e}") from None


def save_png(image01: np.ndarray, path: Path, size: int = 0) -> Path:
    """A [0, 1] grayscale array as an 8-bit PNG, the longer side resized to `size` (0: keep)."""
    image = Image.fromarray(np.round(np.clip(image01, 0.0, 1.0) * 255).astype(np.uint8), mode="L")
    if size and max(image.size) > size:
        scale = size / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def stable_unit(value: str, salt: str = "") -> float:
    """A deterministic number in [0, 1) from a string (site and split assignment)."""
    return int.from_bytes(hashlib.sha256(f"{salt}\x00{value}".encode()).digest()[:8], "big") / 2**64


def _summary(sites: dict[str, list[ExamRecord]]) -> str:
    lines = []
    for site, records in sorted(sites.items()):
        per_patient = collections.Counter(r.patient_id for r in records)
        visits = collections.Counter(per_patient.values())
        splits = collections.Counter(r.split for r in records)
        lines.append(f"{site}: {len(per_patient)} patients, {len(records)} studies "
                     f"({', '.join(f'{k} {v}' for k, v in sorted(splits.items()))}); visits per patient: "
                     + ", ".join(f"{k}x{v}" for k, v in sorted(visits.items())))
    return "\n".join(lines) or "no usable exams"


def write_prepared(out: Path, sites: dict[str, list[ExamRecord]], skipped: list[SkippedRow]) -> PreparedData:
    """Write each site's manifest, the skip report and the summary."""
    manifests = []
    for site, records in sorted(sites.items()):
        if not records:
            continue
        path = out / site / MANIFEST_FILE
        write_manifest(path, assign_visits(records))
        manifests.append(path)
    # A federation folder: `fedtar simulate --data OUT` and node configs find the manifests here.
    (out / FEDERATION_FILE).write_text(json.dumps(
        {"manifests": [m.relative_to(out).as_posix() for m in manifests]}, indent=2) + "\n")
    with (out / SKIPPED_FILE).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["source", "line", "reason"])
        for s in skipped:
            writer.writerow([s.path, s.line, s.reason])
    reasons = collections.Counter(s.reason.split(" (")[0] for s in skipped)
    text = _summary(sites)
    text += f"\n\nSkipped {len(skipped)} item(s)" + "".join(f"\n  {n:5d}  {r}" for r, n in reasons.most_common())
    if skipped:
        text += f"\n(each one, with its source and reason: {out / SKIPPED_FILE})"
    (out / SUMMARY_FILE).write_text(text + "\n")
    for s in skipped:
        log.warning("skipped %s", s)
    return PreparedData(manifests, skipped, text)
