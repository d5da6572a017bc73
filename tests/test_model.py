"""The report generator: per-sample patient LoRA, what travels, save/load, pretrained folders."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from torch.overrides import TorchFunctionMode
from transformers import GPT2LMHeadModel, ViTModel

from data_adapters.records import read_manifest
from fedtar.config import V1_GENERATOR, load_config
from fedtar.data.demographics import PatientAssigner
from fedtar.data.exams import Batch, load_exams
from fedtar.data.tokenizer import ReportTokenizer
from fedtar.generator.adapters import PatientLoRALinear
from fedtar.generator.backbones import tiny_decoder_config, tiny_encoder_config
from fedtar.generator.change_head import CHANGE_HEAD
from fedtar.generator.model import adapt_model, build_model, load_model, save_model
from fedtar.generator.parameters import get_travelling_state, set_travelling_state, size_report, travelling_specs

# What travels: the shared and patient LoRA factors, the hypernetwork, the patient projection, the change head.
ADAPTER_TENSORS = ("lora_A", "lora_B", "hypernetwork.", "patient_proj", CHANGE_HEAD + ".")
TINY = {"model.hidden_size": 32, "model.layers": 1, "model.heads": 2, "data.image_size": 32,
        "data.max_tokens": 64, "lora.hyper_dim": 8,
        "demographics.gmm": False}  # q_p = the profile itself: distinct for every patient


@pytest.fixture(scope="module")
def site(small_federation):
    manifest = read_manifest(small_federation[0])
    tok = ReportTokenizer.train(r.findings for r in manifest.records)
    exams = load_exams(manifest, tok, image_size=32, max_tokens=64)
    exams.q = PatientAssigner.fit(exams.profiles, use_gmm=False)(exams.profiles)
    return tok, exams


def _perturb_adapters(model) -> None:
    """Non-zero patient factors (their init is zero, which would make any test pass)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("hypernetwork", ["shared", "per-layer"])
def test_batched_patient_lora_equals_per_sample(site, hypernetwork):
    tok, exams = site
    torch.manual_seed(0)
    model = build_model(load_config(overrides={**TINY, "lora.hypernetwork": hypernetwork}), tok).eval()
    _perturb_adapters(model)
    batch = next(exams.where(visit=2).batches(6))  # six patients, each with a prior
    assert len(set(map(tuple, batch.q.tolist()))) == 6, "the batch must mix patients"
    with torch.no_grad():
        batched, targets = model.report_logits(batch, batch.q)
        for i in range(6):
            alone, t = model.report_logits(_row(batch, i), batch.q[i:i + 1])
            n = t.shape[1]  # the row's own length; the batch pads to its longest
            assert torch.equal(targets[i, :n], t[0])
            torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-4, rtol=1e-4)
        # ...and row 0 does depend on its own patient: the adapter really is per sample.
        other, _ = model.report_logits(_row(batch, 0), batch.q[1:2])
    assert (other[0] - batched[0, :other.shape[1]]).abs().max() > 1e-3


def _row(batch, i):
    return Batch(**{f.name: getattr(batch, f.name)[i:i + 1] for f in fields(batch)})


class _CountBmm(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.bmm:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def test_patient_path_has_no_loop_over_samples(site):
    tok, exams = site
    model = build_model(load_config(overrides=TINY), tok).eval()
    counts = []
    for size in (1, 8):
        batch = next(exams.batches(size))
        with torch.no_grad(), _CountBmm() as counter:
            model(batch, batch.q)
        counts.append(counter.calls)
    assert counts[0] == counts[1] > 0


def test_travelling_set_excludes_frozen_base(site):
    tok, _ = site
    model = build_model(load_config(overrides=TINY), tok)
    specs = travelling_specs(model)
    names = [s.name for s in specs]
    assert names and all(any(k in n for k in ADAPTER_TENSORS) for n in names)
    assert any(n.startswith(CHANGE_HEAD + ".") for n in names)  # the change generator's head travels too
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.endswith("base.weight") for n in frozen) and "decoder.transformer.wte.weight" in frozen
    report = size_report(model)
    assert 0 < report["share"] < 1 and report["travelling_bytes"] == sum(s.bytes for s in specs)
    # Switching the base to trainable makes it travel too.
    full = build_model(load_config(overrides={**TINY, "train.base": "trainable"}), tok)
    assert "decoder.transformer.wte.weight" in [s.name for s in travelling_specs(full)]
    # Ablation: no patient LoRA, no hypernetwork tensors.
    shared_only = build_model(load_config(overrides={**TINY, "lora.patient": False}), tok)
    assert not any("hyper" in s.name or "patient_proj" in s.name for s in travelling_specs(shared_only))


def _hyper_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "hyper" in n)


def test_shared_hypernetwork_does_not_grow_with_depth(site):
    tok, _ = site
    d = TINY["lora.hyper_dim"]
    sizes = {}
    for kind in ("shared", "per-layer"):
        for layers in (1, 3):
            cfg = load_config(overrides={**TINY, "model.layers": layers, "lora.hypernetwork": kind})
            model = build_model(cfg, tok)
            adapted = sum(isinstance(m, PatientLoRALinear) for m in model.modules())
            sizes[kind, layers] = (_hyper_params(model), adapted)
    (one, n1), (three, n3) = sizes["shared", 1], sizes["shared", 3]
    assert n3 > n1 and three - one == d * (n3 - n1)  # only the layer embedding grows, hyper_dim per layer
    per_one, per_three = sizes["per-layer", 1][0], sizes["per-layer", 3][0]
    assert per_three > 2 * per_one and three < per_three / 3


def test_shared_hypernetwork_tells_layers_apart(site):
    """One generator, different factors per layer: the layer embedding conditions it."""
    tok, _ = site
    torch.manual_seed(0)
    model = build_model(load_config(overrides=TINY), tok)
    _perturb_adapters(model)
    layers = [m for m in model.modules() if isinstance(m, PatientLoRALinear)]
    same_shape = [m for m in layers if (m.in_features, m.out_features) == (layers[1].in_features,
                                                                          layers[1].out_features)]
    assert len(same_shape) >= 2 and all(m.shared_hyper[0] is model.hypernetwork for m in layers)
    phi = torch.randn(3, TINY["lora.hyper_dim"])
    (a1, b1), (a2, b2) = same_shape[0].patient_factors(phi), same_shape[1].patient_factors(phi)
    assert a1.shape == a2.shape and (a1 - a2).abs().max() > 1e-3 and (b1 - b2).abs().max() > 1e-3


def test_travelling_state_round_trip_and_mismatch(site):
    tok, _ = site
    a = build_model(load_config(overrides=TINY), tok)
    b = build_model(load_config(overrides=TINY), tok)
    _perturb_adapters(a)
    set_travelling_state(b, get_travelling_state(a))
    for (n, x), y in zip(get_travelling_state(a).items(), get_travelling_state(b).values()):
        assert torch.equal(x, y), n
    bad = get_travelling_state(a)
    name = next(iter(bad))
    bad[name] = torch.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        set_travelling_state(b, bad)


def test_saved_model_loads_and_generates_the_same(site, tmp_path):
    tok, exams = site
    torch.manual_seed(0)
    model = build_model(load_config(overrides={**TINY, "model.prior": "both"}), tok).eval()
    _perturb_adapters(model)
    batch = next(exams.where(visit=2).batches(4))
    before = model.generate(batch, batch.q, max_new_tokens=12, num_beams=2)
    save_model(tmp_path / "m", model, tok)
    loaded, tok2 = load_model(tmp_path / "m")
    after = loaded.eval().generate(batch, batch.q, max_new_tokens=12, num_beams=2)
    assert before == after and tok2.vocab_size == tok.vocab_size
    assert [s.name for s in travelling_specs(loaded)] == [s.name for s in travelling_specs(model)]


def test_greedy_equals_beam_of_one_and_beams_score_at_least_as_well(site):
    tok, exams = site
    torch.manual_seed(0)
    model = build_model(load_config(overrides=TINY), tok).eval()
    batch = next(exams.batches(3))
    greedy = model.generate(batch, batch.q, max_new_tokens=10, num_beams=1)
    assert len(greedy) == 3 and all(len(g) <= 10 for g in greedy)
    beams = model.generate(batch, batch.q, max_new_tokens=10, num_beams=3)
    assert len(beams) == 3


def test_pretrained_encoder_and_decoder_from_local_folders(site, tmp_path):
    tok, exams = site
    torch.manual_seed(0)
    enc = ViTModel(tiny_encoder_config(32, 1, 32, 1, 2, 8), add_pooling_layer=False)
    dec_cfg = tiny_decoder_config(tok.vocab_size, 32, 1, 2, 140, tok.bos_id, tok.eos_id, tok.pad_id)
    dec_cfg.add_cross_attention = False  # like DistilGPT2: no cross-attention in the checkpoint
    dec = GPT2LMHeadModel(dec_cfg)
    enc.save_pretrained(tmp_path / "enc")
    dec.save_pretrained(tmp_path / "dec")
    cfg = load_config(overrides={**TINY, "model.encoder": str(tmp_path / "enc"),
                                 "model.decoder": str(tmp_path / "dec")})
    model = build_model(cfg, tok)
    torch.testing.assert_close(model.decoder.transformer.wte.weight, dec.transformer.wte.weight)
    torch.testing.assert_close(model.encoder.embeddings.patch_embeddings.projection.weight,
                               enc.embeddings.patch_embeddings.projection.weight)
    trainable = {s.name for s in travelling_specs(model)}
    assert any("crossattention" in n and "base" in n for n in trainable), "new cross-attention must train"
    assert "decoder.transformer.wte.weight" not in trainable
    batch = next(exams.batches(2))
    assert torch.isfinite(model(batch, batch.q))
    # A base assembled from these folders (no pretraining) keeps them training once saved and adapted.
    bare = build_model(load_config(overrides={**cfg.to_flat(), "lora.shared": False, "lora.patient": False}), tok)
    save_model(tmp_path / "base", bare, tok)
    adapted = adapt_model(load_model(tmp_path / "base")[0], cfg)
    assert {s.name for s in travelling_specs(adapted)} == trainable


def test_pretrained_cross_attention_stays_frozen_and_home(site, tmp_path):
    """A decoder checkpoint with cross-attention (an encoder-decoder pretrained together): only adapters travel."""
    tok, exams = site
    dec_cfg = tiny_decoder_config(tok.vocab_size, 32, 1, 2, 140, tok.bos_id, tok.eos_id, tok.pad_id)
    GPT2LMHeadModel(dec_cfg).save_pretrained(tmp_path / "dec")  # add_cross_attention = True
    cfg = load_config(overrides={**TINY, "model.decoder": str(tmp_path / "dec")})
    model = build_model(cfg, tok)
    names = [s.name for s in travelling_specs(model)]
    assert not any("crossattention" in n and ".base." in n for n in names)
    assert any("crossattention" in n and "lora_A" in n for n in names)  # adapted by LoRA, like any layer
    assert all(any(k in n for k in ADAPTER_TENSORS) for n in names)


def test_shared_lora_exports_to_peft_and_loads_there(site, tmp_path):
    import copy

    from peft import PeftModel

    from fedtar.generator.export import save_peft_adapter

    tok, exams = site
    torch.manual_seed(0)
    cfg = load_config(overrides={**TINY, **V1_GENERATOR, "lora.patient": False, "model.prior": "none"})
    model = build_model(cfg, tok).eval()
    _perturb_adapters(model)
    plain_decoder = copy.deepcopy(model.decoder)
    for name, module in list(plain_decoder.named_modules()):  # strip our wrappers: the bare base decoder
        if isinstance(module, PatientLoRALinear):
            parent, _, child = name.rpartition(".")
            setattr(plain_decoder.get_submodule(parent) if parent else plain_decoder, child, module.base)
    save_peft_adapter(model, tmp_path / "adapter")
    peft_decoder = PeftModel.from_pretrained(plain_decoder, tmp_path / "adapter").eval()
    batch = next(exams.batches(2))
    with torch.no_grad():
        memory, mask = model.encode(batch, None)
        ids = batch.input_ids[:, :20]
        ours = model.decoder(input_ids=ids, encoder_hidden_states=memory, encoder_attention_mask=mask).logits
        theirs = peft_decoder(input_ids=ids, encoder_hidden_states=memory, encoder_attention_mask=mask).logits
        with peft_decoder.disable_adapter():
            bare = peft_decoder(input_ids=ids, encoder_hidden_states=memory, encoder_attention_mask=mask).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert (ours - bare).abs().max() > 1e-2, "the exported adapter must matter"


def test_the_gmm_fitted_in_row_chunks_matches_one_pass(monkeypatch):
    """The E-step runs GMM_CHUNK rows at a time (memory bounded at any cohort size); the fit is the
    same as in one pass up to float64 rounding, and q_p rows still sum to one."""
    import fedtar.data.demographics as demographics

    x = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 3.0, 0.5])
    whole = demographics.DiagonalGMM.fit(x, components=8, iterations=20, seed=1)
    monkeypatch.setattr(demographics, "GMM_CHUNK", 64)
    chunked = demographics.DiagonalGMM.fit(x, components=8, iterations=20, seed=1)
    for a, b in zip(whole.state_dict().values(), chunked.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    q = chunked.responsibilities(x)
    assert q.shape == (1000, 8)
    torch.testing.assert_close(q.sum(-1), torch.ones(1000))
    torch.testing.assert_close(q, whole.responsibilities(x), rtol=1e-4, atol=1e-5)


def test_a_damaged_saved_config_is_an_error_naming_the_file_and_a_bom_is_read(tiny_base, tmp_path):
    """The one reader of a model folder's config (load_model, and the base's size for a run that names it)."""
    import shutil

    from fedtar.generator.model import CONFIG_FILE, base_architecture

    copy = shutil.copytree(tiny_base, tmp_path / "base")
    text = (copy / CONFIG_FILE).read_text()
    (copy / CONFIG_FILE).write_text("\ufeff" + text, encoding="utf-8")  # saved by an editor that adds a BOM
    assert base_architecture(copy)["model.hidden_size"] == 32
    (copy / CONFIG_FILE).write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=f"{CONFIG_FILE}: cannot read the model's config"):
        load_model(copy)
    assert base_architecture(tmp_path / "no-base") == {}
