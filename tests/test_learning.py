"""Learning is tested by learning: short fixed-seed runs scored on held-out synthetic patients.

Bases are trained from random weights on a small public pool (the same code
as `fedtar pretrain`), then scored on the held-out patients of a separate
federation; each claim compares two runs that differ in one switch only.
"""

from __future__ import annotations

import pytest
import torch

from data_adapters.synthetic import SyntheticConfig, generate_federation
from fedtar.config import V1_GENERATOR, apply_overrides, load_config
from fedtar.data.exams import concat_exams
from fedtar.data.site import load_site
from fedtar.generator.model import adapt_model, build_model, load_model
from fedtar.learning.pretrain import pretrain_base
from fedtar.learning.training import make_optimizer, train_local
from fedtar.scoring.evaluation import evaluate_model

SMALL = {"model.hidden_size": 64, "model.layers": 2, "model.heads": 2, "demographics.gmm_components": 8,
         "lora.hyper_dim": 8, "lora.alpha": 8, "train.lr": 3e-3}
POOL = SyntheticConfig(sites=3, patients=60, visits=4, seed=500, image_size=64, site_prefix="public",
                       first_site_index=100)


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    return generate_federation(tmp_path_factory.mktemp("learning"),
                               SyntheticConfig(sites=2, patients=50, visits=4, seed=5, image_size=64))


# The generator that states what changed (issue 19): a change head comparing prior and current
# image tokens, its loss on the true change, the decoder taught on the true change.
CHANGE_GENERATOR = {"model.change_head": True, "model.change_loss": 1.0, "model.change_teacher": True}
# The options of that generator one step at a time (the slow test below): the head with its loss but
# without the teacher (the step before the teacher; the full generator is the fast test's). The
# difference tokens alone (model.compare = difference) were measured here too and score below the v1
# generator (cmp_acc 0.286 against 0.352, 2026-12-05): they stay off by default and no test claims
# they help (docs/results.md).
GENERATOR_OPTIONS = {
    "head-and-loss": {**V1_GENERATOR, "model.change_head": True, "model.change_loss": 1.0},
}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """One base per prior mode (and generator), trained from scratch the same way (cached per module)."""
    made = {}

    def get(prior: str, generator: str = "v1"):
        if (prior, generator) not in made:
            extra = {"change": CHANGE_GENERATOR, "v1": V1_GENERATOR, **GENERATOR_OPTIONS}[generator]
            cfg = load_config(overrides={**SMALL, "model.prior": prior, **extra})
            made[prior, generator] = pretrain_base(tmp_path_factory.mktemp(f"base_{prior}_{generator}"), cfg,
                                                   epochs=28, lr=3e-3, pool=POOL)
        return made[prior, generator]

    return get


def held_out(model, tokenizer, federation):
    sites = [load_site(m, tokenizer, model.cfg) for m in federation]
    return evaluate_model(model, [s.split("test") for s in sites], tokenizer), sites


def test_short_training_beats_the_untrained_model(bases, federation):
    base, tokenizer = load_model(bases("both"))
    torch.manual_seed(0)
    untrained = build_model(apply_overrides(base.cfg, {"train.base": "trainable"}), tokenizer)
    before, _ = held_out(untrained, tokenizer, federation)
    after, _ = held_out(base, tokenizer, federation)
    print({k: (round(before.overall[k], 3), round(after.overall[k], 3)) for k in ("bleu4", "ce_f1", "cider")})
    assert after.overall["bleu4"] > before.overall["bleu4"] + 0.2
    assert after.overall["ce_f1"] > before.overall["ce_f1"] + 0.15
    assert after.overall["cider"] > before.overall["cider"] + 0.5


def test_prior_conditioning_improves_comparison_to_prior(bases, federation):
    with_prior, _ = held_out(*load_model(bases("both")), federation)
    without, _ = held_out(*load_model(bases("none")), federation)
    print("comparison-to-prior accuracy: with prior", round(with_prior.overall["cmp_acc"], 3),
          "without", round(without.overall["cmp_acc"], 3))
    assert with_prior.overall["cmp_n"] > 60
    assert with_prior.overall["cmp_acc"] > without.overall["cmp_acc"] + 0.1, \
        (with_prior.overall["cmp_acc"], without.overall["cmp_acc"])


def test_the_change_generator_states_what_changed_better_than_the_v1_generator(bases, federation):
    # The same pool, epochs and seed; only the generator's change modules differ.
    change, _ = held_out(*load_model(bases("both", "change")), federation)
    v1, _ = held_out(*load_model(bases("both")), federation)
    print("comparison-to-prior accuracy: change generator", round(change.overall["cmp_acc"], 3),
          "v1", round(v1.overall["cmp_acc"], 3))
    assert change.overall["cmp_n"] > 60
    assert change.overall["cmp_acc"] > v1.overall["cmp_acc"] + 0.1, (change.overall["cmp_acc"], v1.overall["cmp_acc"])


@pytest.mark.slow
@pytest.mark.parametrize("option", sorted(GENERATOR_OPTIONS))
def test_each_generator_option_against_the_v1_generator(bases, federation, option):
    with_option, _ = held_out(*load_model(bases("both", option)), federation)
    v1, _ = held_out(*load_model(bases("both")), federation)
    print("comparison-to-prior accuracy:", option, round(with_option.overall["cmp_acc"], 3),
          "v1", round(v1.overall["cmp_acc"], 3))
    assert with_option.overall["cmp_acc"] > v1.overall["cmp_acc"] + 0.05, (with_option.overall["cmp_acc"],
                                                                          v1.overall["cmp_acc"])


def adapt(base_dir, federation, patient: bool, epochs: int = 16):
    base, tokenizer = load_model(base_dir)
    cfg = apply_overrides(base.cfg, {**SMALL, "lora.shared": True, "lora.patient": patient,
                                     "train.base": "frozen"})
    torch.manual_seed(0)
    model = adapt_model(base, cfg)
    sites = [load_site(m, tokenizer, cfg) for m in federation]
    train = concat_exams([s.split("train") for s in sites])
    optimizer = make_optimizer(model, cfg.train)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        train_local(model, train, cfg.train, 16, optimizer, generator=g, epochs=1)
    return evaluate_model(model, [s.split("test") for s in sites], tokenizer)


def test_patient_lora_gets_demographic_content_right(bases, federation):
    # No prior report: it would reveal the previous exam's age- and sex-dependent statements.
    personal = adapt(bases("none"), federation, patient=True)
    blind = adapt(bases("none"), federation, patient=False)
    acc_personal, acc_blind = personal.overall["demo_acc"], blind.overall["demo_acc"]
    print(f"demographic statements right: patient LoRA {acc_personal:.3f}, without {acc_blind:.3f}")
    assert acc_personal > acc_blind + 0.1, (acc_personal, acc_blind)
