"""Generate reports for held-out exams and score them, overall and per visit index."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data_adapters.synthetic.phrasing import demographic_accuracy
from fedtar.data.exams import Exams
from fedtar.data.site import load_site
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import ReportGenerator
from fedtar.learning.training import generate_reports
from fedtar.scoring.metrics import METRIC_COLUMNS, PROTOCOLS, evaluate_by_visit, evaluate_reports
from fedtar.scoring.metrics.clinical import Labeler, rule_labels

# The columns of every results table: the metrics plus the synthetic demographic statements.
REPORT_COLUMNS = (*METRIC_COLUMNS, "demo_acc")


@dataclass
class Evaluation:
    overall: dict[str, float]
    by_visit: dict[int, dict[str, float]]
    generated: list[str] = field(repr=False)
    references: list[str] = field(repr=False)
    visits: list[int] = field(repr=False)
    by_year: dict[int, dict[str, float]] = field(default_factory=dict)  # by the exams' study year (eras)


def generate_for(model: ReportGenerator, parts: list[Exams],
                 tokenizer: ReportTokenizer, num_beams: int = 1) -> tuple[list[str], list[str], list[int]]:
    """Generated and reference reports (and visit indices) over several sites' exams."""
    gen, ref, visits = [], [], []
    section = model.cfg.data.section
    for exams in parts:
        # Batches of data.batch_size, as in training: evaluation's activations (at 256 px some 10 MiB
        # per row) are bounded by the config, not by the split (a fixed 64 grew the peak with the test split).
        gen += generate_reports(model, exams, tokenizer, num_beams=num_beams, batch_size=model.cfg.data.batch_size)
        rows = exams.rows().tolist()
        ref += [exams.records[i].report(section) for i in rows]
        visits += [exams.records[i].visit_index for i in rows]
    return gen, ref, visits


def evaluate_model(model: ReportGenerator, parts: list[Exams], tokenizer: ReportTokenizer,
                   num_beams: int = 1, with_meteor: bool = False, labeler: Labeler = rule_labels) -> Evaluation:
    gen, ref, visits = generate_for(model, parts, tokenizer, num_beams)
    overall = evaluate_reports(gen, ref, with_meteor, labeler)
    # Age- and sex-dependent statements: meaningful on the synthetic federation only.
    overall["demo_acc"] = demographic_accuracy(gen, ref)
    by_visit = evaluate_by_visit(gen, ref, visits, labeler=labeler)
    overall["prior_halluc"] = by_visit.get(1, {}).get("prior_halluc", float("nan"))
    years = [p.records[i].study_date.year for p in parts for i in p.rows().tolist()]
    by_year = evaluate_by_visit(gen, ref, years, labeler=labeler)  # the same grouping, by calendar year
    return Evaluation(overall, by_visit, gen, ref, visits, by_year)


def flat_metrics(ev: Evaluation) -> dict[str, float]:
    """One flat dict as results files hold it: the table's columns, then per-visit and per-year
    keys (`cider-visit-2`, `n-visit-2`, `cider-year-2016`) for the per-visit and per-era tables."""
    out = {c: float(ev.overall.get(c, float("nan"))) for c in REPORT_COLUMNS}
    out["cmp_n"] = float(ev.overall.get("cmp_n", 0))
    for group, table in (("visit", ev.by_visit), ("year", ev.by_year)):
        for t, m in table.items():
            for c in ("bleu4", "cider", "ce_f1", "cmp_acc"):
                out[f"{c}-{group}-{t}"] = float(m.get(c, float("nan")))
            out[f"n-{group}-{t}"] = float(m["n"])
    return out


# The standard report-generation table (as in MIMIC-CXR papers), for `fedtar evaluate`.
STANDARD_COLUMNS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider",
                    "ce_precision", "ce_recall", "ce_f1")
GENERATED_COLUMNS = ("site_id", "patient_id", "visit_index", "study_date", "generated", "reference")


def clinical_protocol_rows(overall: dict[str, float]) -> list[list[object]]:
    """One row per CE protocol: its name, precision, recall, F1 (for `fedtar evaluate`)."""
    rows = []
    for key, name in PROTOCOLS.items():
        if "_f1" in key or key == "ce_f1":
            p, r = key.replace("f1", "precision", 1), key.replace("f1", "recall", 1)
            rows.append([name, overall.get(p, float("nan")), overall.get(r, float("nan")), overall.get(key)])
    return rows


def evaluate_manifests(model: ReportGenerator, tokenizer: ReportTokenizer, manifests: Sequence[Path],
                       split: str = "test", num_beams: int = 1, with_meteor: bool = True,
                       labeler: Labeler = rule_labels) -> tuple[Evaluation, list[Exams]]:
    """A trained model on one split of several sites' manifests (each site fits its own GMM)."""
    parts = [load_site(m, tokenizer, model.cfg).split(split) for m in manifests]
    parts = [p for p in parts if p.num_examples()]
    if not parts:
        raise ValueError(f"no {split!r} exams in {', '.join(map(str, manifests))}")
    return evaluate_model(model, parts, tokenizer, num_beams, with_meteor, labeler), parts


def write_generated(path: str | Path, parts: Sequence[Exams], evaluation: Evaluation) -> Path:
    """One row per evaluated exam: pseudonymous keys, generated and reference report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [p.records[i] for p in parts for i in p.rows().tolist()]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(GENERATED_COLUMNS)
        for r, gen, ref in zip(records, evaluation.generated, evaluation.references):
            writer.writerow([r.site_id, r.patient_id, r.visit_index, r.study_date.isoformat(), gen, ref])
    return path
