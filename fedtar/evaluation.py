"""Generate reports for held-out exams and score them, overall and per visit index."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_adapters.dataset import ExamTensors
from data_adapters.synthetic.phrasing import demographic_accuracy
from fedtar.metrics import METRIC_COLUMNS, evaluate_by_visit, evaluate_reports
from fedtar.model import ReportGenerator
from fedtar.tokenizer import ReportTokenizer
from fedtar.training import generate_reports

# The columns of every results table: the metrics plus the synthetic demographic statements.
REPORT_COLUMNS = (*METRIC_COLUMNS, "demo_acc")


@dataclass
class Evaluation:
    overall: dict[str, float]
    by_visit: dict[int, dict[str, float]]
    generated: list[str] = field(repr=False)
    references: list[str] = field(repr=False)
    visits: list[int] = field(repr=False)


def generate_for(model: ReportGenerator, parts: list[ExamTensors],
                 tokenizer: ReportTokenizer, num_beams: int = 1) -> tuple[list[str], list[str], list[int]]:
    """Generated and reference reports (and visit indices) over several sites' exams."""
    gen, ref, visits = [], [], []
    section = model.cfg.data.section
    for exams in parts:
        gen += generate_reports(model, exams, tokenizer, num_beams=num_beams)
        rows = exams.rows().tolist()
        ref += [exams.records[i].report(section) for i in rows]
        visits += [exams.records[i].visit_index for i in rows]
    return gen, ref, visits


def evaluate_model(model: ReportGenerator, parts: list[ExamTensors],
                   tokenizer: ReportTokenizer, num_beams: int = 1, with_meteor: bool = False) -> Evaluation:
    gen, ref, visits = generate_for(model, parts, tokenizer, num_beams)
    overall = evaluate_reports(gen, ref, with_meteor)
    # Age- and sex-dependent statements: meaningful on the synthetic federation only.
    overall["demo_acc"] = demographic_accuracy(gen, ref)
    return Evaluation(overall, evaluate_by_visit(gen, ref, visits), gen, ref, visits)
