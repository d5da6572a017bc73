"""Write the synthetic longitudinal federation to disk as per-site manifests.

The output goes through the same manifest writer a real adapter uses, so a
run on synthetic data exercises the real loading path.

Layout::

    OUT/federation.json           the generator's config, for provenance
    OUT/<site_id>/manifest.csv    one row per exam
    OUT/<site_id>/images/*.png    one frontal image per exam
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data_adapters.records import FEDERATION_FILE, ExamRecord, find_manifests, write_manifest

from .images import render
from .patients import SIMULATED_FINDINGS, Patient, SiteProfile, make_patient, make_site
from .phrasing import write_report



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


def _split_of(rank: int, n: int, cfg: SyntheticConfig) -> str:
    n_test = max(1, round(n * cfg.test_fraction))
    n_val = max(1, round(n * cfg.validate_fraction)) if n > 2 else 0
    return "test" if rank < n_test else "validate" if rank < n_test + n_val else "train"


def _site_records(cfg: SyntheticConfig, site: SiteProfile, site_dir: Path) -> list[ExamRecord]:
    image_dir = site_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    split_rank = np.random.default_rng([cfg.seed, site.index, 104729]).permutation(cfg.patients)
    records: list[ExamRecord] = []
    for number in range(cfg.patients):
        patient: Patient = make_patient(cfg.seed, site, number, cfg.visits, cfg.start_year)
        split = _split_of(int(split_rank[number]), cfg.patients, cfg)
        for exam in patient.exams:
            year = exam.study_date.year
            image_rng = np.random.default_rng([cfg.seed, site.index, number, exam.visit_index])
            pixels = render(exam.severity, patient.sides, site, year, cfg.image_size, image_rng)
            image_path = image_dir / f"{patient.patient_id}_v{exam.visit_index}.png"
            Image.fromarray(pixels).save(image_path, optimize=False)
            findings, impression = write_report(
                exam.severity, exam.change, patient.sides, exam.age, patient.sex, site.lexicon, year
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
    return records


def generate_federation(out: str | Path, cfg: SyntheticConfig = SyntheticConfig()) -> list[Path]:
    """Write every site's manifest and images under OUT; return the manifest paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifests = []
    for k in range(cfg.sites):
        index = cfg.first_site_index + k
        site = make_site(cfg.seed, index, f"{cfg.site_prefix}{k + 1}")
        site_dir = out / site.site_id
        manifest = site_dir / "manifest.csv"
        write_manifest(manifest, _site_records(cfg, site, site_dir))
        manifests.append(manifest)
    meta = {"generator": "fedtar.synthetic", "config": asdict(cfg),
            "findings": list(SIMULATED_FINDINGS), "manifests": [str(m.relative_to(out)) for m in manifests]}
    (out / FEDERATION_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return manifests


def ensure_federation(root: str | Path, cfg: SyntheticConfig = SyntheticConfig()) -> list[Path]:
    """The federation's manifests, writing it first if the folder has none."""
    root = Path(root)
    if (root / FEDERATION_FILE).is_file():
        return find_manifests(root)
    return generate_federation(root, cfg)
