"""The MIMIC rehearsal archive, parallel and resumable prepare, and a base that speaks MIMIC's language."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import time
from pathlib import Path

import pytest
from archives import build_mimic, tree_digest

from conftest import TINY_FED
from data_adapters import mimic_cxr
from data_adapters.deid import Pseudonymizer
from data_adapters.mimic_cxr import MimicOptions, prepare_mimic_cxr
from data_adapters.mimic_rehearsal import RehearsalConfig, write_rehearsal
from data_adapters.records import find_manifests, read_manifest
from data_adapters.report_sections import extract_sections
from data_adapters.study_jobs import JOURNAL_FILE
from fedtar.cli import main
from fedtar.data.tokenizer import unknown_rate

KEY = Pseudonymizer(b"rehearsal-secret-0123456789abcdef")
MIMIC_SENTENCE = ("Mild pulmonary vascular congestion. Small bilateral pleural effusions with bibasilar atelectasis. "
                  "Endotracheal tube terminates 4 cm above the carina.")
SETS = [a for k, v in TINY_FED.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_rehearsal(tmp_path_factory.mktemp("rehearsal"), RehearsalConfig(studies=240, image_size=48,
                                                                                  workers=2))


def _table(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(gzip.open(path, "rt")))


def _outputs(out: Path) -> dict[str, bytes]:
    """What a prepare leaves (its journal aside): manifests, skip report, summary, images."""
    return {k: v for k, v in tree_digest(out).items() if k != JOURNAL_FILE}


def test_rehearsal_is_the_same_bytes_at_any_worker_count(tmp_path):
    a = write_rehearsal(tmp_path / "a", RehearsalConfig(studies=30, image_size=32, seed=4, workers=1))
    b = write_rehearsal(tmp_path / "b", RehearsalConfig(studies=30, image_size=32, seed=4, workers=2))
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert (a.studies, a.images) == (b.studies, b.images) and a.images > a.studies  # laterals too
    c = write_rehearsal(tmp_path / "c", RehearsalConfig(studies=30, image_size=32, seed=5, workers=1))
    assert tree_digest(tmp_path / "c") != tree_digest(tmp_path / "a")
    with pytest.raises(ValueError, match="already holds an archive"):
        write_rehearsal(tmp_path / "a", RehearsalConfig(studies=3, image_size=32))


def test_mimic_counts_give_mimic_cxr_jpg_proportions(tmp_path):
    """`synth-mimic --mimic-counts`: 1.66 images and 3.5 studies per subject, the official split's shares."""
    assert main(["synth-mimic", "--out", str(tmp_path), "--studies", "3000", "--mimic-counts", "--image-size", "8",
                 "--no-progress"]) == 0
    root = tmp_path / "mimic-cxr-jpg"
    images = _table(root / "mimic-cxr-2.0.0-metadata.csv.gz")
    studies = {r["study_id"] for r in images}
    subjects = {r["subject_id"] for r in images}
    assert len(studies) == 3000 and len(images) == sum(1 for _ in (root / "files").rglob("*.jpg"))
    assert 1.6 < len(images) / len(studies) < 1.72  # MIMIC-CXR-JPG: 377,110 / 227,835 = 1.655
    assert 3.2 < len(studies) / len(subjects) < 3.8  # 227,835 / 65,379 = 3.48
    split = {r["study_id"]: r["split"] for r in _table(root / "mimic-cxr-2.0.0-split.csv.gz")}
    train = sum(s == "train" for s in split.values()) / len(split)
    assert 0.95 < train < 0.995 and {"validate", "test"} <= set(split.values())  # 97.8% / 0.8% / 1.4%
    views = {r["ViewPosition"] for r in images}
    assert views == {"PA", "AP", "LATERAL"}


def test_rehearsal_layout_tables_and_report_text_agree(archive):
    meta = _table(archive.root / "mimic-cxr-2.0.0-metadata.csv.gz")
    chexpert = {row["study_id"]: row for row in _table(archive.root / "mimic-cxr-2.0.0-chexpert.csv.gz")}
    patients = _table(archive.patients)
    assert len({r["study_id"] for r in meta}) == archive.studies == len(chexpert) == 240
    assert len(patients) == archive.subjects and {p["gender"] for p in patients} == {"F", "M"}
    assert {r["ViewPosition"] for r in meta} == {"PA", "AP", "LATERAL"}
    text_all = ""
    for row in meta:
        folder = archive.root / "files" / f"p{row['subject_id'][:2]}" / f"p{row['subject_id']}" / f"s{row['study_id']}"
        assert (folder / f"{row['dicom_id']}.jpg").is_file()
        report = Path(f"{folder}.txt").read_text()
        text_all += report
        sections = extract_sections(report)
        assert sections.findings and sections.impression
        labels = chexpert[row["study_id"]]
        effusion = labels["Pleural Effusion"]
        # The CheXpert table says what the text says.
        if effusion == "1.0":
            assert "pleural effusion" in sections.findings.lower() and "no pleural effusion" not in \
                sections.findings.lower()
        elif effusion == "0.0":
            assert any(p in sections.findings.lower() for p in ("no pleural effusion", "resolved", "resolution"))
        if labels["Support Devices"] == "1.0":
            assert any(w in sections.findings.lower() for w in ("tube", "catheter", "line", "pacemaker", "sternotomy"))
    for phrase in ("___", "Compared to the prior study", "pleural effusion", "atelectasis", "carina",
                   "pulmonary vascular congestion", "FINDINGS:", "IMPRESSION:", "INDICATION:"):
        assert phrase in text_all


def test_prepare_with_two_workers_writes_the_same_bytes_as_one(archive, tmp_path):
    for n in (1, 2):
        prepare_mimic_cxr(archive.root, archive.patients, tmp_path / f"w{n}", KEY,
                          MimicOptions(sites=3, image_size=32, workers=n))
    one, two = _outputs(tmp_path / "w1"), _outputs(tmp_path / "w2")
    assert one == two
    assert sum(k.endswith("manifest.csv") for k in one) == 3 and sum(k.endswith(".png") for k in one) == 240
    # Only studies of the manifests are on disk: no staging folder, no orphan image.
    listed = {p.relative_to(tmp_path / "w1").as_posix() for m in find_manifests(tmp_path / "w1")
              for r in read_manifest(m).records for p in r.image_paths}
    assert listed == {k for k in one if k.endswith(".png")}


def test_interrupted_prepare_continues_where_it_stopped(archive, tmp_path, monkeypatch):
    opts = MimicOptions(sites=2, image_size=32, workers=1)
    prepare_mimic_cxr(archive.root, archive.patients, tmp_path / "whole", KEY, opts)
    load, calls = mimic_cxr._load_image, []

    def interrupted(path):
        if len(calls) == 25:
            raise KeyboardInterrupt  # Ctrl-C in the middle of study 26
        calls.append(path)
        return load(path)

    monkeypatch.setattr(mimic_cxr, "_load_image", interrupted)
    scrub, scrubbed = type(KEY).scrub, []

    def slow_scrub(self, *args, **kwargs):  # a MIMIC-sized backlog of report text for the scrubbing thread
        time.sleep(0.05)
        scrubbed.append(1)
        return scrub(self, *args, **kwargs)

    monkeypatch.setattr(type(KEY), "scrub", slow_scrub)
    with pytest.raises(KeyboardInterrupt):
        prepare_mimic_cxr(archive.root, archive.patients, tmp_path / "resumed", KEY, opts)
    assert not (tmp_path / "resumed" / "federation.json").exists()
    assert len(scrubbed) < 240, "the interrupt stops the scrubbing thread, not only the image workers"
    monkeypatch.setattr(type(KEY), "scrub", scrub)
    calls.clear()
    monkeypatch.setattr(mimic_cxr, "_load_image", lambda path: calls.append(path) or load(path))
    prepare_mimic_cxr(archive.root, archive.patients, tmp_path / "resumed", KEY, opts)
    assert len(calls) == 240 - 25  # the 25 finished studies were verified, not decoded again
    assert _outputs(tmp_path / "resumed") == _outputs(tmp_path / "whole")
    # A damaged image is found by its digest and written again; the rest is reused.
    damaged = next((tmp_path / "resumed").rglob("*.png"))
    damaged.write_bytes(b"\x89PNG torn")
    calls.clear()
    prepare_mimic_cxr(archive.root, archive.patients, tmp_path / "resumed", KEY, opts)
    assert len(calls) == 1 and _outputs(tmp_path / "resumed") == _outputs(tmp_path / "whole")
    # Other options than the folder was prepared with are refused, not mixed in.
    with pytest.raises(ValueError, match=r"other options \(image_size\)"):
        prepare_mimic_cxr(archive.root, archive.patients, tmp_path / "resumed", KEY,
                          MimicOptions(sites=2, image_size=48, workers=1))


def test_study_missing_from_the_split_table_is_skipped_and_the_rest_kept(tmp_path):
    root = tmp_path / "mimic"
    build_mimic(root, tmp_path / "hosp")
    split = root / "mimic-cxr-2.0.0-split.csv"
    rows = [r for r in csv.reader(split.open()) if r[1] != "50000013"]
    with split.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    prepared = prepare_mimic_cxr(root, tmp_path / "hosp" / "patients.csv", tmp_path / "out", KEY,
                                 MimicOptions(sites=2, image_size=16, workers=2))
    assert any("not in mimic-cxr-2.0.0-split.csv" in s.reason and KEY.study("50000013") in s.reason
               for s in prepared.skipped)
    listed = {p for m in prepared.manifests for r in read_manifest(m).records for p in r.image_paths}
    assert listed and listed == set((tmp_path / "out").rglob("*.png"))  # every written image is in a manifest
    with pytest.raises(ValueError, match="--sites must be at least 1"):
        prepare_mimic_cxr(root, tmp_path / "hosp" / "patients.csv", tmp_path / "out0", KEY, MimicOptions(sites=0))


@pytest.fixture(scope="module")
def prepared(archive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "mimic"
    assert main(["prepare", "mimic-cxr", "--root", str(archive.root), "--patients", str(archive.patients),
                 "--out", str(out), "--sites", "2", "--image-size", "32", "--workers", "2", "--no-progress",
                 "--secret", str(out.parent / "secret")]) == 0
    return out


def test_base_pretrained_on_the_pool_knows_its_words_and_the_synthetic_one_does_not(prepared, tiny_base, tmp_path,
                                                                                        caplog):
    from fedtar.config import load_config
    from fedtar.data.site import load_site
    from fedtar.generator.model import load_model
    from fedtar.learning.pretrain import pretrain_base

    cfg = load_config(overrides=TINY_FED)
    base = pretrain_base(tmp_path / "base", cfg, epochs=1, lr=3e-3, data=prepared)
    assert not (tmp_path / "base" / "public_pool").exists()  # no synthetic pool was written
    mimic_tok = load_model(base)[1]
    synthetic_tok = load_model(tiny_base)[1]
    held_out = [r.report("findings") for m in find_manifests(prepared) for r in read_manifest(m).records
                if r.split == "test"]
    assert held_out
    on_mimic = unknown_rate(mimic_tok, held_out)
    on_synthetic = unknown_rate(synthetic_tok, held_out)
    sentence_mimic, sentence_synthetic = unknown_rate(mimic_tok, [MIMIC_SENTENCE]), unknown_rate(synthetic_tok,
                                                                                                 [MIMIC_SENTENCE])
    print(f"held-out rehearsal reports: {on_mimic} (pool base) vs {on_synthetic} (synthetic base); "
          f"sentence: {sentence_mimic} vs {sentence_synthetic}")
    assert on_mimic.rate < 0.01 and sentence_mimic.unknown == 0
    assert on_synthetic.rate > 0.1 and sentence_synthetic.rate > 0.3
    # Sites report the rate when they load, and warn above data.max_unknown_rate.
    manifest = find_manifests(prepared)[0]
    caplog.set_level(logging.INFO, logger="fedtar.data.site")
    assert load_site(manifest, mimic_tok, cfg).unknown.rate < 0.01
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert load_site(manifest, synthetic_tok, cfg).unknown.rate > 0.2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "does not know" in warned[0] and "threshold 1.00%" in warned[0]


def test_ct_base_is_never_pretrained_on_the_2d_pool(prepared, tmp_path):
    from fedtar.config import load_config
    from fedtar.learning.pretrain import pretrain_base

    ct = load_config(overrides={**TINY_FED, "data.volume_depth": 8, "model.encoder": "tiny-3d",
                                "model.image_channels": 3})
    with pytest.raises(ValueError, match="CT base"):
        pretrain_base(tmp_path / "ct", ct, epochs=1)
    with pytest.raises(ValueError, match="lists 2D images"):
        pretrain_base(tmp_path / "ct", ct, epochs=1, data=prepared)
    assert not (tmp_path / "ct" / "public_pool").exists()


def test_rehearsal_prepare_pretrain_simulate_evaluate_end_to_end(prepared, tmp_path, capsys):
    """The MIMIC walkthrough of the README at CI size: prepare (above) -> pretrain --data -> simulate -> evaluate."""
    base = tmp_path / "base"
    assert main(["pretrain", "--out", str(base), "--data", str(prepared), "--epochs", "2", *SETS]) == 0
    assert main(["simulate", "--out", str(tmp_path / "sim"), "--data", str(prepared), "--base", str(base),
                 "--rounds", "2", "--engine", "inprocess", "--strategies", "fedtar", *SETS]) == 0
    run = tmp_path / "sim" / "runs" / "all" / "fedtar" / "seed-0"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed" and results["rounds_done"] == 2
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run), "--data", str(prepared), "--no-meteor",
                 "--out", str(tmp_path / "generated.csv")]) == 0
    out = capsys.readouterr().out
    assert "unknown-token rate of the model's tokenizer on their reports: 0.00%" in out
    assert len(list(csv.DictReader((tmp_path / "generated.csv").open()))) == results["metrics"]["num-examples"]


def test_base_assembled_from_local_backbones_uses_the_decoders_tokenizer(prepared, tmp_path):
    """model.encoder / model.decoder as local folders (small random ones here: never a download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, ViTConfig, ViTModel

    from fedtar.config import load_config
    from fedtar.data.site import load_site
    from fedtar.generator.model import adapt_model, load_model
    from fedtar.learning.pretrain import pretrain_base
    from fedtar.learning.training import generate_reports, make_optimizer, train_local

    eos = "<|endoftext|>"
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(["The heart size is normal. No pleural effusion."] * 4,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=[eos],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    decoder_dir, encoder_dir = tmp_path / "decoder", tmp_path / "encoder"
    PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=eos, eos_token=eos, unk_token=eos
                            ).save_pretrained(decoder_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=bpe.get_vocab_size(), n_embd=32, n_layer=1, n_head=2, n_positions=256,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(decoder_dir)
    ViTModel(ViTConfig(image_size=32, patch_size=8, num_channels=1, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=64), add_pooling_layer=False
             ).save_pretrained(encoder_dir)
    cfg = load_config(overrides={**TINY_FED, "model.encoder": str(encoder_dir), "model.decoder": str(decoder_dir),
                                 "data.max_tokens": 64})
    base_dir = pretrain_base(tmp_path / "base", cfg)
    assert not (tmp_path / "base" / "public_pool").exists()  # assembled, not pretrained on synthetic data
    base, tokenizer = load_model(base_dir)  # offline, from the saved folder alone
    assert not tokenizer.word_level and tokenizer.bos_id == tokenizer.eos_id == 0
    assert tokenizer.pad_id == bpe.get_vocab_size()  # [PAD] added after the decoder's vocabulary
    assert unknown_rate(tokenizer, [MIMIC_SENTENCE]).unknown == 0  # byte-level BPE has no unknown words
    ids = tokenizer.encode_batch([MIMIC_SENTENCE], 64)[0, 1:].tolist()
    assert tokenizer.decode(ids) == MIMIC_SENTENCE[: len(tokenizer.decode(ids))] and tokenizer.decode(ids)
    model = adapt_model(base, cfg)
    site = load_site(find_manifests(prepared)[0], tokenizer, cfg)
    stats = train_local(model, site.split("train"), cfg.train, 4, make_optimizer(model, cfg.train), max_steps=2)
    assert stats.loss == stats.loss and stats.loss > 0  # a finite loss over the subword targets
    generated = generate_reports(model, site.split("test"), tokenizer)
    assert len(generated) == site.split("test").num_examples()
