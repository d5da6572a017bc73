"""The `fedtar` command: thin parsing over the library, clear errors."""

from __future__ import annotations

import json

from fedtar.cli import main


def test_synth_writes_the_federation_and_prints_its_summary(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--sites", "2", "--patients", "4", "--visits", "3",
                 "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "site1" in out and "site2" in out and "t=3" in out
    meta = json.loads((tmp_path / "federation.json").read_text())
    assert meta["config"]["sites"] == 2 and len(meta["manifests"]) == 2


def test_bad_config_key_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--set", "train.nonsense=1"]) == 2
    assert "unknown config key 'train.nonsense'" in capsys.readouterr().err


def test_simulate_inprocess_prints_a_comparison_table(tiny_base, tmp_path, capsys):
    # The model's size comes from the base (a 32-wide, 1-layer model on 32 px images): no --set for it.
    args = ["simulate", "--out", str(tmp_path), "--base", str(tiny_base), "--engine", "inprocess",
            "--strategies", "fedtar,fedavg", "--rounds", "1", "--sites", "2", "--patients", "5", "--visits", "3",
            "--set", "demographics.gmm_components=4", "--set", "lora.hyper_dim=4",
            "--set", "client.local_epochs=1", "--set", "client.eval_meteor=false"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fedtar" in out and "fedavg" in out and "cmp_acc" in out
    assert "cmp_acc per visit index" in out and "Per site" in out
    assert (tmp_path / "runs" / "all" / "fedtar" / "seed-0" / "results.json").is_file()


def test_demo_with_a_given_base(tiny_base, tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--base", str(tiny_base), "--epochs", "1",
            "--sites", "2", "--patients", "5", "--visits", "3",
            "--set", "model.hidden_size=32", "--set", "model.layers=1", "--set", "model.heads=2",
            "--set", "data.image_size=32", "--set", "demographics.gmm_components=4", "--set", "lora.hyper_dim=4",
            "--set", "client.eval_meteor=false"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "pretrained base, adapters untrained" in out and "Travelling set" in out
    from fedtar.generator.model import load_model

    model, tok = load_model(tmp_path / "model")  # the demo's adapted model loads back
    assert model.cfg.lora.patient and tok.vocab_size > 10


def test_a_size_given_against_the_base_is_refused_naming_both(tiny_base, tmp_path, capsys):
    args = ["simulate", "--out", str(tmp_path), "--base", str(tiny_base), "--engine", "inprocess",
            "--strategies", "fedavg", "--rounds", "1", "--sites", "2", "--patients", "4", "--visits", "3",
            "--set", "model.hidden_size=64"]
    assert main(args) == 2
    assert "model.hidden_size (base 32, config 64)" in capsys.readouterr().err
