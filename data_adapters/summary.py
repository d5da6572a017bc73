"""Summaries of a federation's manifests: who is where, how sites differ, how visits evolve."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fedtar.tables import format_table

from .records import ExamRecord, Manifest, read_manifest

WORD = re.compile(r"[a-z]+")


def image_noise(path: Path) -> float:
    """Noise estimate: std of the difference of horizontally adjacent pixels / sqrt(2)."""
    a = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    return float(np.median(np.abs(np.diff(a, axis=1))) * 1.4826 / np.sqrt(2))


@dataclass
class SiteSummary:
    site_id: str
    patients: int
    exams: int
    age_mean: float
    age_sd: float
    female: float
    first_year: int
    last_year: int
    intensity: float
    noise: float
    vocabulary: Counter
    skipped: int


def summarize_site(manifest: Manifest) -> SiteSummary:
    recs = manifest.records
    ages = [r.age for r in recs if r.visit_index == 1]
    firsts = [r for r in recs if r.visit_index == 1]
    intensities = [float(np.asarray(Image.open(r.image_paths[0])).mean() / 255) for r in recs]
    return SiteSummary(
        site_id=recs[0].site_id if recs else manifest.path.parent.name,
        patients=len(firsts),
        exams=len(recs),
        age_mean=statistics.fmean(ages) if ages else float("nan"),
        age_sd=statistics.pstdev(ages) if ages else float("nan"),
        female=sum(r.sex == "F" for r in firsts) / max(len(firsts), 1),
        first_year=min((r.study_date.year for r in recs), default=0),
        last_year=max((r.study_date.year for r in recs), default=0),
        intensity=statistics.fmean(intensities) if intensities else float("nan"),
        noise=statistics.fmean(image_noise(r.image_paths[0]) for r in recs) if recs else float("nan"),
        vocabulary=Counter(w for r in recs for w in WORD.findall(r.report("both").lower())),
        skipped=len(manifest.skipped),
    )


def prevalence_by_visit(records: list[ExamRecord]) -> dict[str, dict[int, float]]:
    """Fraction of exams with each labelled finding present, per visit index."""
    visits = sorted({r.visit_index for r in records})
    findings = sorted({f for r in records for f in r.labels})
    out: dict[str, dict[int, float]] = {}
    for f in findings:
        out[f] = {}
        for t in visits:
            at_t = [r for r in records if r.visit_index == t]
            out[f][t] = sum(r.labels.get(f, 0) > 0 for r in at_t) / max(len(at_t), 1)
    return out


def summary_text(manifest_paths: list[Path]) -> str:
    manifests = [read_manifest(p) for p in manifest_paths]
    sites = [summarize_site(m) for m in manifests]
    rows = [[s.site_id, s.patients, s.exams, f"{s.age_mean:.1f}±{s.age_sd:.1f}", f"{100 * s.female:.0f}%",
             f"{s.first_year}-{s.last_year}", s.intensity, s.noise, len(s.vocabulary), s.skipped] for s in sites]
    text = [format_table(
        ["site", "patients", "exams", "age", "female", "years", "mean px", "noise", "vocab", "skipped"], rows)]
    records = [r for m in manifests for r in m.records]
    prev = prevalence_by_visit(records)
    if prev:
        visits = sorted(next(iter(prev.values())))
        text.append("\nFinding prevalence per visit index (all sites):")
        text.append(format_table(["finding", *(f"t={t}" for t in visits)],
                                 [[f, *(v[t] for t in visits)] for f, v in prev.items()], digits=2))
    for m in manifests:
        for s in m.skipped:
            text.append(f"skipped {s}")
    return "\n".join(text)
