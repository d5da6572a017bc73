"""Learning is tested by learning: short fixed-seed runs on held-out synthetic patients.

One small federation, one tiny model trained from scratch (base trainable, so
no cached base is needed); each claim compares two runs that differ in one
switch only.
"""

from __future__ import annotations

import pytest
import torch

from data_adapters.dataset import concat_exams
from data_adapters.records import read_manifest
from data_adapters.synthetic import SyntheticConfig, generate_federation
from data_adapters.synthetic.phrasing import demographic_accuracy
from fedtar.config import load_config
from fedtar.evaluation import evaluate_model
from fedtar.model import build_model
from fedtar.site import load_site
from fedtar.tokenizer import ReportTokenizer
from fedtar.training import make_optimizer, train_local

SMALL = {"model.hidden_size": 64, "model.layers": 2, "model.heads": 2, "train.base": "trainable",
         "train.lr": 2e-3, "demographics.gmm_components": 8, "lora.hyper_dim": 8, "lora.alpha": 8}
EPOCHS = 14


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    out = tmp_path_factory.mktemp("learning")
    manifests = generate_federation(out, SyntheticConfig(sites=2, patients=32, visits=4, seed=5, image_size=64))
    reports = [r.findings for m in manifests for r in read_manifest(m).records if r.split == "train"]
    return manifests, ReportTokenizer.train(reports)


def run(federation, epochs: int = EPOCHS, **overrides):
    manifests, tok = federation
    cfg = load_config(overrides={**SMALL, **{k.replace("__", "."): v for k, v in overrides.items()}})
    torch.manual_seed(0)
    model = build_model(cfg, tok)
    sites = [load_site(m, tok, cfg) for m in manifests]
    train = concat_exams([s.split("train") for s in sites])
    optimizer = make_optimizer(model, cfg.train)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        train_local(model, train, cfg.train, 16, optimizer, generator=g, epochs=1)
    return evaluate_model(model, [s.split("test") for s in sites], tok)


def test_short_training_beats_the_untrained_model(federation):
    untrained = run(federation, epochs=0)
    trained = run(federation)
    assert trained.overall["bleu4"] > untrained.overall["bleu4"] + 0.15
    assert trained.overall["ce_f1"] > untrained.overall["ce_f1"] + 0.1
    assert trained.overall["cider"] > untrained.overall["cider"] + 0.5


def test_prior_conditioning_improves_comparison_to_prior(federation):
    with_prior = run(federation, model__prior="both")
    without = run(federation, model__prior="none")
    assert with_prior.overall["cmp_n"] > 50
    assert with_prior.overall["cmp_acc"] > without.overall["cmp_acc"] + 0.1


def test_patient_lora_gets_demographic_content_right(federation):
    # No prior report here: it would reveal the previous exam's age/sex statements.
    personal = run(federation, model__prior="image")
    blind = run(federation, model__prior="image", lora__patient=False)
    acc_personal = demographic_accuracy(personal.generated, personal.references)
    acc_blind = demographic_accuracy(blind.generated, blind.references)
    assert acc_personal > acc_blind + 0.15, (acc_personal, acc_blind)
