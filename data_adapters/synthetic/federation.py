"""Write the synthetic longitudinal federation to disk as per-site manifests.

The output goes through the same manifest writer a real adapter uses, so a
run on synthetic data exercises the real loading path.

Layout::

    OUT/federation.json           the generator's config, for provenance
    OUT/<site_id>/manifest.csv    one row per exam
    OUT/<site_id>/images/*.png    one frontal image per exam
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data_adapters.records import FEDERATION_FILE, ExamRecord, find_manifests, write_manifest

from .images import render
from .patients import FOLLOW_UP_DENSITIES, SIMULATED_FINDINGS, Patient, SiteProfile, Timeline, make_patient, make_site
from .phrasing import write_report

SPLITS = ("patient", "prospective")


@dataclass(frozen=True)
class SyntheticConfig:
    sites: int = 4
    patients: int = 40          # per site
    visits: int = 5             # exams per patient
    seed: int = 0
    image_size: int = 128
    start_year: int = 2010
    test_fraction: float = 0.2
    validate_fraction: float = 0.1
    site_prefix: str = "site"   # "public" for the pretraining pool
    first_site_index: int = 0   # site profiles are drawn by index: pools stay disjoint
    # FTA conditions (docs/guides/simulate.md, "The synthetic federation"); all off by default.
    timeline_spread: int = 0    # >0: site cohorts start spread over this many years, each with its own
                                # follow-up density (dense 60-240 days, medium 180-540, sparse 365-900)
    drift_events: bool = False  # each site changes scanner and reporting template at its own year
    demographic_signal: bool = False  # also an age-only statement (aortic calcification from 75)
    split: str = "patient"      # patient: held-out patients | prospective: per site, exams from the
                                # cut date on are the test split (the last test_fraction of its exams)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")

    @property
    def fta(self) -> bool:
        """Whether any site-timeline condition is on (sites then have their own Timeline)."""
        return bool(self.timeline_spread) or self.drift_events


def site_timeline(cfg: SyntheticConfig, k: int) -> Timeline | None:
    """Site k's timeline under the FTA conditions (None: the shared default one).

    Sites take evenly spaced start years over `timeline_spread` in a seed-drawn order,
    the oldest with dense follow-up; a drift event falls 2-4 years into the site's cohort.
    """
    if not cfg.fta:
        return None
    position = int(np.random.default_rng([cfg.seed, 6007, cfg.first_site_index]).permutation(cfg.sites)[k])
    start = cfg.start_year + round(cfg.timeline_spread * position / max(cfg.sites - 1, 1))
    gaps = FOLLOW_UP_DENSITIES[position % len(FOLLOW_UP_DENSITIES)] if cfg.timeline_spread else (90, 730)
    change = None
    if cfg.drift_events:
        change = start + int(np.random.default_rng([cfg.seed, 6011, cfg.first_site_index + k]).integers(2, 5))
    return Timeline(start, gaps, change)


def _split_of(rank: int, n: int, cfg: SyntheticConfig) -> str:
    n_test = max(1, round(n * cfg.test_fraction))
    n_val = max(1, round(n * cfg.validate_fraction)) if n > 2 else 0
    return "test" if rank < n_test else "validate" if rank < n_test + n_val else "train"


def prospective_cut(dates: list[dt.date], test_fraction: float) -> dt.date:
    """The site's cut date: its last `test_fraction` of exams (by date) fall on or after it."""
    ordered = sorted(dates)
    return ordered[min(len(ordered) - 1, int(round(len(ordered) * (1 - test_fraction))))]


def _exam_splits(cfg: SyntheticConfig, patients: list[Patient], split_rank: np.ndarray
                 ) -> tuple[list[list[str]], dt.date | None]:
    """Each exam's split. Patient split: by patient. Prospective: test from the cut date on,
    before it validation patients (by the same ranks) validate and the rest train."""
    if cfg.split == "patient":
        return [[_split_of(int(split_rank[i]), cfg.patients, cfg)] * len(p.exams) for i, p in enumerate(patients)], None
    cut = prospective_cut([e.study_date for p in patients for e in p.exams], cfg.test_fraction)
    n_val = max(1, round(cfg.patients * cfg.validate_fraction)) if cfg.patients > 2 else 0
    return [["test" if e.study_date >= cut else "validate" if int(split_rank[i]) < n_val else "train"
             for e in p.exams] for i, p in enumerate(patients)], cut


def _site_records(cfg: SyntheticConfig, site: SiteProfile, site_dir: Path) -> tuple[list[ExamRecord], dt.date | None]:
    image_dir = site_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    split_rank = np.random.default_rng([cfg.seed, site.index, 104729]).permutation(cfg.patients)
    patients = [make_patient(cfg.seed, site, number, cfg.visits, cfg.start_year) for number in range(cfg.patients)]
    splits, cut = _exam_splits(cfg, patients, split_rank)
    records: list[ExamRecord] = []
    for number, patient in enumerate(patients):
        for exam, split in zip(patient.exams, splits[number]):
            year = exam.study_date.year
            image_rng = np.random.default_rng([cfg.seed, site.index, number, exam.visit_index])
            pixels = render(exam.severity, patient.sides, site, year, cfg.image_size, image_rng)
            image_path = image_dir / f"{patient.patient_id}_v{exam.visit_index}.png"
            Image.fromarray(pixels).save(image_path, optimize=False)
            lexicon, structured = site.template_at(year)
            findings, impression = write_report(
                exam.severity, exam.change, patient.sides, exam.age, patient.sex, lexicon, year,
                structured=structured, demographic_signal=cfg.demographic_signal,
            )
            records.append(ExamRecord(
                site_id=site.site_id,
                patient_id=patient.patient_id,
                visit_index=exam.visit_index,
                study_date=exam.study_date,
                days_since_prior=(exam.study_date - patient.exams[exam.visit_index - 2].study_date).days
                if exam.visit_index > 1 else 0,
                age=exam.age,
                sex=patient.sex,
                image_paths=[image_path.relative_to(site_dir)],
                findings=findings,
                impression=impression,
                split=split,
                extras={"view": "PA"},
                labels=dict(exam.severity),
                changes=dict(exam.change),
            ))
    return records, cut


def generate_federation(out: str | Path, cfg: SyntheticConfig = SyntheticConfig()) -> list[Path]:
    """Write every site's manifest and images under OUT; return the manifest paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifests, timelines = [], {}
    for k in range(cfg.sites):
        index = cfg.first_site_index + k
        site = make_site(cfg.seed, index, f"{cfg.site_prefix}{k + 1}", site_timeline(cfg, k))
        site_dir = out / site.site_id
        manifest = site_dir / "manifest.csv"
        records, cut = _site_records(cfg, site, site_dir)
        write_manifest(manifest, records)
        manifests.append(manifest)
        if site.timeline is not None or cut is not None:
            timelines[site.site_id] = {**(asdict(site.timeline) if site.timeline else {}),
                                       **({"prospective_cut": cut.isoformat()} if cut else {})}
    meta = {"generator": "fedtar.synthetic", "config": asdict(cfg),
            "findings": list(SIMULATED_FINDINGS), "manifests": [str(m.relative_to(out)) for m in manifests]}
    if timelines:
        meta["sites"] = timelines
    (out / FEDERATION_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return manifests


def ensure_federation(root: str | Path, cfg: SyntheticConfig = SyntheticConfig()) -> list[Path]:
    """The federation's manifests, writing it first if the folder has none."""
    root = Path(root)
    if (root / FEDERATION_FILE).is_file():
        return find_manifests(root)
    return generate_federation(root, cfg)
