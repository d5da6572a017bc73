"""`fedtar demo`: central patient-adaptive training on the synthetic federation.

Pretrains (or reuses) the public base, adapts it with patient-adaptive LoRA
on all sites' training patients pooled, and evaluates on held-out patients
next to the base before adaptation. This is the non-federated reference
point the federation is compared with.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from data_adapters.synthetic import SyntheticConfig, ensure_federation
from fedtar.config import FedTARConfig
from fedtar.data.exams import concat_exams
from fedtar.data.site import SiteData, load_site
from fedtar.generator.model import ReportGenerator, adapt_model, load_model, save_model
from fedtar.generator.parameters import size_report
from fedtar.learning.pretrain import pretrain_base
from fedtar.learning.training import make_optimizer, resolve_device, train_local
from fedtar.operations.tables import format_table
from fedtar.scoring.evaluation import REPORT_COLUMNS, Evaluation, evaluate_model

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    before: Evaluation
    after: Evaluation
    sizes: dict[str, float]
    seconds: float
    model_dir: Path  # the adapted model, loadable with fedtar.generator.model.load_model


def metrics_rows(named: list[tuple[str, Evaluation]]) -> list[list[object]]:
    rows = []
    for name, ev in named:
        rows.append([name, *(ev.overall.get(c, float("nan")) for c in REPORT_COLUMNS)])
    return rows


def metrics_table(named: list[tuple[str, Evaluation]], markdown: bool = False) -> str:
    return format_table(["model", *REPORT_COLUMNS], metrics_rows(named), markdown=markdown)


def by_visit_table(ev: Evaluation, columns: tuple[str, ...] = ("bleu4", "cider", "ce_f1", "cmp_acc")) -> str:
    rows = [[f"t={t}", int(m["n"]), *(m.get(c, float("nan")) for c in columns)] for t, m in ev.by_visit.items()]
    return format_table(["visit", "n", *columns], rows)


def train_central(model: ReportGenerator, sites: list[SiteData], cfg: FedTARConfig, epochs: int) -> None:
    """Every site's training exams pooled in one place (each exam keeps its own site's q_p);
    images stream from each site's own store, so memory stays bounded per site."""
    train = concat_exams([s.split("train") for s in sites])
    optimizer = make_optimizer(model, cfg.train)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    for epoch in range(epochs):
        stats = train_local(model, train, cfg.train, cfg.data.batch_size, optimizer, generator=generator, epochs=1)
        log.info("central epoch %d/%d: train loss %.3f", epoch + 1, epochs, stats.loss)


def run_demo(out: str | Path, cfg: FedTARConfig, epochs: int = 8, pretrain_epochs: int | None = None,
             synth: SyntheticConfig = SyntheticConfig(), base_dir: str | Path | None = None) -> DemoResult:
    start = time.time()
    out = Path(out)
    manifests = ensure_federation(out / "federation", synth)
    # A given base is used as it is; otherwise the cached public-pool base (trained if missing).
    base_dir = Path(base_dir) if base_dir else pretrain_base(out / "base", cfg, epochs=pretrain_epochs)
    base, tokenizer = load_model(base_dir)
    torch.manual_seed(cfg.train.seed)
    model = adapt_model(base, cfg).to(resolve_device(cfg.train.device))
    sites: list[SiteData] = [load_site(m, tokenizer, cfg) for m in manifests]
    test = [s.split("test") for s in sites]
    before = evaluate_model(model, test, tokenizer, with_meteor=cfg.client.eval_meteor)
    train_central(model, sites, cfg, epochs)
    after = evaluate_model(model, test, tokenizer, with_meteor=cfg.client.eval_meteor)
    saved = save_model(out / "model", model, tokenizer)
    return DemoResult(before, after, size_report(model), time.time() - start, saved)
