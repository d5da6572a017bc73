"""Issue 13, config: one validation layer names the key, the value and what is allowed, before any work."""

from __future__ import annotations

import pytest

from fedtar.cli import main
from fedtar.config import RULES, FedTARConfig, load_config, validate_config


@pytest.mark.parametrize("key,value,allowed", [
    ("data.batch_size", "0", "an integer >= 1"),
    ("lora.rank", "0", "an integer >= 1"),
    ("model.prior", "bogus", "one of none, image, report, both"),
    ("federation.rounds", "-2", "an integer >= 1"),
    ("train.lr", "0", "a number > 0"),
    ("policy.features", "gap,age", "one of gap, recency"),
    ("federation.strategy", "fedbest", "one of fedtar"),
])
def test_bad_values_name_key_value_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ValueError) as e:
        load_config(overrides={key: value})
    assert f"config key {key}:" in str(e.value) and allowed in str(e.value)


def test_bad_value_in_a_config_file_names_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[client]\neval_beams = 0\n")
    with pytest.raises(ValueError, match=r"c\.toml: config key client\.eval_beams: 0 is not allowed"):
        load_config(path)


def test_cross_field_rules():
    with pytest.raises(ValueError, match=r"federation.min_sites=3 but the federation has 2 site"):
        validate_config(load_config(overrides={"federation.min_sites": 3}), num_sites=2)
    validate_config(load_config(overrides={"federation.min_sites": 2}), num_sites=2)
    with pytest.raises(ValueError, match="privacy.noise_multiplier=1 needs privacy.clip > 0"):
        load_config(overrides={"privacy.noise_multiplier": 1})
    with pytest.raises(ValueError, match="multiple of the number of heads"):
        load_config(overrides={"model.hidden_size": 30, "model.heads": 4})


def test_defaults_and_valid_values_pass():
    validate_config(FedTARConfig())
    load_config(overrides={"train.device": "cuda:1", "data.hu_windows": "lung,brain", "federation.rounds": 1})


def test_choices_agree_with_the_code_that_reads_them():
    from aggregator.strategies import STRATEGIES
    from data_adapters.ct import HU_WINDOWS
    from fedtar.generator.model import PRIOR_CHOICES
    from fedtar.learning.temporal_policy import TIME_FEATURES

    # every server strategy, and the simulation's pooled reference (aggregator/simulation.py)
    assert set(RULES["federation.strategy"].choices) == set(STRATEGIES) | {"centralized"}
    assert set(RULES["data.hu_windows"].choices) == set(HU_WINDOWS)
    assert RULES["model.prior"].choices == PRIOR_CHOICES
    assert RULES["policy.features"].choices == TIME_FEATURES
    assert set(RULES) <= set(FedTARConfig().to_flat())


def test_simulate_refuses_min_sites_above_the_sites_before_any_work(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--sites", "2", "--patients", "3", "--visits", "2",
                 "--set", "federation.min_sites=100", "--engine", "inprocess"]) == 2
    assert "federation.min_sites=100 but the federation has 2 site(s)" in capsys.readouterr().err
    assert not (out / "base").exists()


@pytest.mark.parametrize("argv,message", [
    (["synth", "--out", "X", "--sites", "0"], "argument --sites: 0 is not allowed"),
    (["synth", "--out", "X", "--patients", "-3"], "argument --patients: -3 is not allowed"),
    (["synth", "--out", "X", "--visits", "0"], "argument --visits: 0 is not allowed"),
    (["simulate", "--rounds", "0"], "argument --rounds: 0 is not allowed"),
    (["evaluate", "--model", "m", "--data", "d", "--beams", "0"], "argument --beams: 0 is not allowed"),
])
def test_cli_numbers_are_checked_like_config_values(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_paper_preset_is_designs_configuration_and_loads_by_name_or_from_a_file(tmp_path):
    from fedtar.cli import PRESET_NAMES
    from fedtar.config import PRESETS

    assert set(PRESET_NAMES) == set(PRESETS)
    paper = load_config(named="paper")
    # DESIGN.md, sections 2-5, as the paper states them.
    assert (paper.lora.rank, paper.lora.alpha, paper.lora.hypernetwork) == (4, 128.0, "per-layer")
    assert (paper.train.lr, paper.policy.meta_lr) == (1e-5, 1e-4)
    assert paper.demographics.gmm and paper.demographics.gmm_components == 16
    assert paper.demographics.features == ("hash", "age", "sex") and not paper.demographics.with_profile
    assert paper.policy.features == () and paper.policy.keep_previous and paper.client.visit_start == "global"
    assert not paper.model.change_head and paper.model.compare == "none"
    # In a file, under the file's own keys; a misspelt name is refused naming the file.
    good = tmp_path / "paper.toml"
    good.write_text('preset = "paper"\n[train]\nlr = 2e-5\n')
    cfg = load_config(good)
    assert cfg.lora.hypernetwork == "per-layer" and cfg.train.lr == 2e-5
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "papr"\n')
    with pytest.raises(ValueError, match=r"bad.toml: preset 'papr': unknown preset \(known: paper\)"):
        load_config(bad)
