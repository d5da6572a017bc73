"""Generate reports for held-out exams and score them, overall and per visit index."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_adapters.dataset import ExamTensors
from fedtar.metrics import evaluate_by_visit, evaluate_reports
from fedtar.model import ReportGenerator
from fedtar.tokenizer import ReportTokenizer
from fedtar.training import generate_reports


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
    return Evaluation(evaluate_reports(gen, ref, with_meteor), evaluate_by_visit(gen, ref, visits), gen, ref, visits)
