"""Sites, patients and disease courses of the synthetic federation.

Everything is drawn from numpy Generators seeded by (seed, site, patient), so
one patient's course does not change when another site or patient is added.
Nothing iterates a set or frozenset while drawing: their order follows the
process's hash seed (PYTHONHASHSEED), so draws would differ between processes.

FTA conditions (all off by default, see SyntheticConfig): a site's own
timeline (cohort start year and follow-up density) and a drift event (at the
site's change year its scanner and its reporting template change).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from data_adapters.findings import change_between

# The findings the generator draws, with (baseline prevalence, onset per visit).
SIMULATED_FINDINGS: dict[str, tuple[float, float]] = {
    "Cardiomegaly": (0.15, 0.08),
    "Pleural Effusion": (0.15, 0.12),
    "Consolidation": (0.10, 0.10),
    "Pneumothorax": (0.05, 0.05),
    "Atelectasis": (0.12, 0.10),
    "Lung Lesion": (0.08, 0.04),
    "Edema": (0.08, 0.08),
    "Support Devices": (0.10, 0.06),
}
LATERAL_FINDINGS = frozenset({"Pleural Effusion", "Consolidation", "Pneumothorax", "Atelectasis", "Lung Lesion"})
AGE_DEPENDENT = frozenset({"Cardiomegaly", "Pleural Effusion", "Edema"})
PRESENCE_ONLY = frozenset({"Support Devices"})


@dataclass(frozen=True)
class Scanner:
    """A site's acquisition profile (one per scanner)."""

    noise: float          # image noise std at the start year (0..1 intensity scale)
    gamma: float          # contrast curve
    brightness: float     # additive offset
    field_of_view: float  # >1 zooms out (more body in view)


@dataclass(frozen=True)
class Timeline:
    """When a site's patients are seen: its cohort's first year and follow-up gaps (days)."""

    start_year: int
    gap_days: tuple[int, int] = (90, 730)
    change_year: int | None = None  # the drift event: new scanner and reporting template from this year


# Follow-up densities a site may have under FTA timelines (days between visits).
FOLLOW_UP_DENSITIES: tuple[tuple[int, int], ...] = ((60, 240), (180, 540), (365, 900))
# The post-change template's phrasing variant (phrasing.NAMES and friends have one more entry).
NEW_TEMPLATE_LEXICON = 3


@dataclass(frozen=True)
class SiteProfile:
    """What makes a site different: who it sees, how it images, how it writes."""

    site_id: str
    index: int
    mean_age: float
    female_fraction: float
    noise: float          # image noise std at the start year (0..1 intensity scale)
    gamma: float          # contrast curve
    brightness: float     # additive offset
    field_of_view: float  # >1 zooms out (more body in view)
    lexicon: int          # which phrasing variant the site's radiologists use
    timeline: Timeline | None = None  # None: the shared default timeline
    new_scanner: Scanner | None = None  # acquisition after the timeline's change year

    def scanner_at(self, year: int) -> Scanner:
        """The acquisition profile in effect in `year` (the drift event swaps it)."""
        if self.new_scanner is not None and self.timeline and self.timeline.change_year is not None \
                and year >= self.timeline.change_year:
            return self.new_scanner
        return Scanner(self.noise, self.gamma, self.brightness, self.field_of_view)

    def template_at(self, year: int) -> tuple[int, bool]:
        """(phrasing lexicon, structured sections) the site's radiologists use in `year`."""
        if self.timeline and self.timeline.change_year is not None and year >= self.timeline.change_year:
            return NEW_TEMPLATE_LEXICON, True
        return self.lexicon, False


@dataclass
class Exam:
    visit_index: int
    study_date: dt.date
    age: float
    severity: dict[str, int]
    change: dict[str, str]


@dataclass
class Patient:
    patient_id: str
    sex: str
    sides: dict[str, str]
    exams: list[Exam]


def _draw_scanner(rng: np.random.Generator) -> Scanner:
    return Scanner(noise=float(rng.uniform(0.03, 0.12)), gamma=float(rng.uniform(0.7, 1.4)),
                   brightness=float(rng.uniform(-0.08, 0.08)), field_of_view=float(rng.uniform(0.9, 1.15)))


def make_site(seed: int, index: int, site_id: str, timeline: Timeline | None = None) -> SiteProfile:
    """A site's profile; with a timeline whose change_year is set, also its second scanner."""
    rng = np.random.default_rng([seed, 7919, index])
    mean_age, female_fraction = float(rng.uniform(48, 68)), float(rng.uniform(0.3, 0.7))
    scanner = _draw_scanner(rng)
    new_scanner = None
    if timeline is not None and timeline.change_year is not None:
        # A newer detector: redrawn contrast and field of view, less noise than the old one.
        new = _draw_scanner(np.random.default_rng([seed, 7919, index, 2]))
        new_scanner = Scanner(min(new.noise, 0.6 * scanner.noise), new.gamma, new.brightness, new.field_of_view)
    return SiteProfile(site_id=site_id, index=index, mean_age=mean_age, female_fraction=female_fraction,
                       noise=scanner.noise, gamma=scanner.gamma, brightness=scanner.brightness,
                       field_of_view=scanner.field_of_view, lexicon=index % 3, timeline=timeline,
                       new_scanner=new_scanner)


def _next_severity(rng: np.random.Generator, finding: str, severity: int, onset: float) -> int:
    if severity == 0:
        if rng.random() >= onset:
            return 0
        return 1 if finding in PRESENCE_ONLY else int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    if finding in PRESENCE_ONLY:
        return 0 if rng.random() < 0.3 else 1
    u = rng.random()
    if u < 0.2:
        return 0
    if u < 0.4:
        return max(severity - 1, 1) if severity > 1 else 0
    if u < 0.7:
        return severity
    return min(severity + 1, 3)


def make_patient(
    seed: int, site: SiteProfile, number: int, visits: int, start_year: int
) -> Patient:
    """One patient's course; a site timeline, when set, gives the start year and the gaps."""
    rng = np.random.default_rng([seed, site.index, number])
    sex = "F" if rng.random() < site.female_fraction else "M"
    age0 = float(np.clip(rng.normal(site.mean_age, 13.0), 20, 92))
    sides = {f: ("left" if rng.random() < 0.5 else "right") for f in sorted(LATERAL_FINDINGS)}
    if site.timeline is not None:
        start_year = site.timeline.start_year
    gap_lo, gap_hi = site.timeline.gap_days if site.timeline is not None else (90, 730)
    # Older patients carry more cardiac and fluid findings, as in real cohorts.
    age_factor = 0.4 + 1.2 * (age0 - 20) / 70
    date = dt.date(start_year, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3 * 365)))
    severity = {}
    for f, (prevalence, _) in SIMULATED_FINDINGS.items():
        p = prevalence * (age_factor if f in AGE_DEPENDENT else 1.0)
        severity[f] = _next_severity(rng, f, 0, p)
    exams = [Exam(1, date, round(age0, 1), severity, {})]
    for t in range(2, visits + 1):
        gap = int(rng.integers(gap_lo, gap_hi))
        date = date + dt.timedelta(days=gap)
        prior = exams[-1].severity
        severity = {
            f: _next_severity(rng, f, prior[f], onset * (age_factor if f in AGE_DEPENDENT else 1.0))
            for f, (_, onset) in SIMULATED_FINDINGS.items()
        }
        change = {f: c for f in severity if (c := change_between(prior[f], severity[f])) is not None}
        age = exams[0].age + (date - exams[0].study_date).days / 365.25
        exams.append(Exam(t, date, round(age, 1), severity, change))
    return Patient(f"{site.site_id}-p{number:04d}", sex, sides, exams)
