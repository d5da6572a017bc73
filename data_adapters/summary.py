"""Summaries of a federation's manifests: who is where, how sites differ, how visits evolve."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .records import ExamRecord, Manifest

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
