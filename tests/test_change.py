"""Comparison to the prior exam: change targets, the change head, and the probe's ceiling."""

from __future__ import annotations

import itertools

import pytest
import torch

from data_adapters.findings import CHANGE_TARGETS, CHEXPERT_OBSERVATIONS, change_between, change_targets
from data_adapters.records import read_manifest
from fedtar.config import load_config
from fedtar.data.exams import concat_exams, load_exams
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.model import adapt_model, build_model, load_model, save_model
from fedtar.generator.parameters import travelling_specs
from fedtar.scoring.change_probe import measure_ceiling, train_probe

TINY = {"model.hidden_size": 32, "model.layers": 1, "model.heads": 2, "data.image_size": 32,
        "data.max_tokens": 64, "lora.hyper_dim": 8, "demographics.gmm": False}
HEAD = {"model.change_head": True, "model.change_loss": 1.0}


def test_change_targets_are_change_between_over_tensors():
    pairs = list(itertools.product(range(4), range(4)))
    prior = torch.tensor([p for p, _ in pairs])
    current = torch.tensor([c for _, c in pairs])
    got = change_targets(prior, current).tolist()
    assert got == [CHANGE_TARGETS.index(change_between(p, c) or "none") for p, c in pairs]
    assert change_targets(torch.tensor([-100, 1]), torch.tensor([2, -100])).tolist() == [-100, -100]


@pytest.fixture(scope="module")
def site(small_federation):
    manifest = read_manifest(small_federation[0])
    tok = ReportTokenizer.train(r.findings for r in manifest.records)
    return tok, manifest, load_exams(manifest, tok, image_size=32, max_tokens=64)


def test_batches_carry_the_change_against_the_prior_exams_labels(site):
    _, manifest, exams = site
    batch = next(exams.batches(len(exams)))
    assert batch.change.shape == (len(batch.index), len(CHEXPERT_OBSERVATIONS))
    assert (batch.change[~batch.has_prior] == -100).all()  # a first visit has nothing to compare with
    records = {(r.patient_id, r.visit_index): r for r in manifest.records}
    checked = 0
    for row, i in enumerate(batch.index.tolist()):
        rec = exams.records[i]
        prior = records.get((rec.patient_id, rec.visit_index - 1))
        if prior is None:
            continue
        for name, severity in rec.labels.items():
            want = change_between(prior.labels[name], severity) or "none"
            assert CHANGE_TARGETS[batch.change[row, CHEXPERT_OBSERVATIONS.index(name)]] == want
            checked += 1
        unlabelled = [j for j, o in enumerate(CHEXPERT_OBSERVATIONS) if o not in rec.labels]
        assert (batch.change[row, unlabelled] == -100).all()
    assert checked > 100


def test_the_change_head_travels_saves_and_adapts_onto_an_old_base(site, tmp_path):
    tok, _, exams = site
    batch = next(exams.where(visit=2).batches(8))
    model = build_model(load_config(overrides={**TINY, **HEAD, "model.compare": "difference"}), tok).eval()
    names = [s.name for s in travelling_specs(model)]
    assert any(n.startswith("change_head.") for n in names) and "compare_type" in names
    assert not any(n.startswith(("encoder.", "decoder.")) and ".base." not in n and "lora" not in n
                   and "hyper" not in n for n in names if not n.startswith("change_head"))
    # The objective adds the change loss; the reported loss stays the report's alone.
    assert float(model.objective(batch, batch.q)) > float(model(batch, batch.q)) + 0.1
    save_model(tmp_path / "m", model, tok)
    loaded, _ = load_model(tmp_path / "m")
    torch.testing.assert_close(loaded.eval()(batch, batch.q), model(batch, batch.q))
    # A base pretrained without comparison modules adapts with fresh ones (and without them again).
    base = build_model(load_config(overrides={**TINY, "lora.shared": False, "lora.patient": False}), tok)
    adapted = adapt_model(base, load_config(overrides={**TINY, **HEAD}))
    assert adapted.change_head is not None and adapted.change_head.queries.requires_grad
    assert adapted.predict_change(batch, batch.q).shape == (8, len(CHEXPERT_OBSERVATIONS))
    with pytest.raises(ValueError, match="need model.prior = image or both"):
        build_model(load_config(overrides={**TINY, **HEAD, "model.prior": "report"}), tok)


def test_the_probe_reads_the_change_far_above_chance(tmp_path):
    """The ceiling of cmp_acc is measured, not assumed: a small CNN given (prior, current, difference)
    reads the change class from the pixels well above the majority class, on a small federation
    written at the reading size (150 patients x 4 visits; the fixture federations are too small
    for any image model to learn change from)."""
    from data_adapters.synthetic import SyntheticConfig, generate_federation

    manifest = read_manifest(generate_federation(tmp_path, SyntheticConfig(sites=1, patients=150, visits=4, seed=5,
                                                                          image_size=32))[0])
    tok = ReportTokenizer.train(r.findings for r in manifest.records)
    exams = load_exams(manifest, tok, image_size=32, max_tokens=16)
    held_out = concat_exams([exams.where(split="validate"), exams.where(split="test")])
    ceiling = measure_ceiling(train_probe(exams.where(split="train"), epochs=25, seed=0), held_out)
    assert sum(ceiling.statements.values()) >= 100
    assert ceiling.overall >= ceiling.chance + 0.10, ceiling  # 0.50 vs 0.37 here; 0.60 vs 0.31 on the FTA federation


def test_cmp_acc_reads_a_reference_after_the_tokenizer_as_it_reads_the_reference(default_federation):
    """Generated text comes out of the tokenizer (lower case, its own spacing): a reference's change
    statements must read the same after an encode/decode round trip, or cmp_acc would score the
    tokenizer rather than the generator."""
    from fedtar.scoring.labeler import extract_changes

    records = [r for m in default_federation for r in read_manifest(m).records]
    tok = ReportTokenizer.train(r.findings for r in records)
    refs = [r.findings for r in records]
    ids = tok.encode_batch(refs, max_length=256)
    stated = 0
    for ref, row in zip(refs, ids.tolist()):
        changes = extract_changes(ref)
        stated += bool(changes)
        assert extract_changes(tok.decode(row)) == changes, ref
    assert stated > 100


def test_pooled_sites_keep_their_labels_when_they_name_different_findings(site):
    """Central training, the probe and pretraining pool sites whose archives may name different findings:
    the pooled labels cover the union (-100 where a site has none), never nothing."""
    _, _, exams = site
    a, b = exams.subset(range(0, 20)), exams.subset(range(20, 40))
    b.labels, b.label_names = b.labels[:, 1:], b.label_names[1:]
    pooled = concat_exams([a, b])
    assert pooled.label_names == exams.label_names
    assert torch.equal(pooled.labels[:20], a.labels) and torch.equal(pooled.labels[20:, 1:], b.labels)
    assert (pooled.labels[20:, 0] == -100).all()
