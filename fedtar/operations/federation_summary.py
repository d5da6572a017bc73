"""The text `fedtar summary` prints for a federation: a table per site and finding prevalence per visit.

The numbers come from data_adapters.summary; this module only lays them out.
"""

from __future__ import annotations

from pathlib import Path

from data_adapters.records import read_manifest
from data_adapters.summary import prevalence_by_visit, summarize_site
from fedtar.operations.tables import format_table


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
