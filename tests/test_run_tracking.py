"""Run tracking: a federation's TensorBoard events read back equal its results.json (issue 22, item 3)."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from aggregator.server_app import run_from_values
from fedtar.operations.tracking import TB_DIR, pretrain_log_dir
from test_federation import grid_for, values


def _scalars(folder) -> dict[str, dict[int, float]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _close(a: float, b: float) -> bool:  # TensorBoard keeps scalars as float32
    return a == pytest.approx(b, rel=1e-6, abs=1e-9)


def test_federation_events_equal_the_results_json(tiny_base, tiny_federation, tmp_path):
    run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=2,
                                       federation__eval_every=1))
    results = json.loads((tmp_path / "results.json").read_text())
    events = _scalars(tmp_path / TB_DIR)
    history = results["history"]
    assert [e["round"] for e in history] == [1, 2]
    # Sites are named as the data names them, in the JSON and in TensorBoard.
    assert set(results["site_metrics"]) == {"site1", "site2", "site3"}
    checked = 0
    for entry in history:
        r = entry["round"]
        expected = {"train/loss": entry["train_loss"], "train/examples": entry["examples"],
                    "comms/bytes_received": entry["bytes_received"], "time/round_seconds": entry["seconds"],
                    "sites/valid": entry["valid"], "sites/answered": entry["answered"], "policy/meta": entry["meta"],
                    "time/site_seconds": entry["site_seconds"], "time/compute_seconds": entry["compute_seconds"],
                    **{f"train/loss_site/{s}": v for s, v in entry["site_train_loss"].items()},
                    **{f"train/examples_visit/{t}": n for t, n in entry["visit_examples"].items()},
                    **{f"policy/alpha_visit/{t}": a for t, a in zip(entry["visits"], entry["alpha"])}}
        assert set(entry["site_train_loss"]) == {"site1", "site2", "site3"}
        # The model's passes are part of the sites' handlers, which are part of the round.
        assert 0 < entry["compute_seconds"] < entry["site_seconds"] <= entry["seconds"] + 0.05
        assert sorted(entry["visit_examples"]) == ["1", "2", "3"] and len(entry["alpha"]) == 3
        # Validation metrics when evaluated: round 1 by eval_every, the last round by the final evaluation.
        evaluated = entry["eval"] if r < len(history) else results["metrics"]
        expected.update({f"eval/{k}": v for k, v in evaluated.items()
                         if "-year-" not in k and not k.startswith("n-") and k != "cmp_n" and v == v})
        assert "eval/bleu4" in expected and "eval/cider-visit-1" in expected
        for tag, value in expected.items():
            assert tag in events and r in events[tag], (tag, r)
            assert _close(events[tag][r], value), (tag, r, events[tag][r], value)
            checked += 1
    assert checked > 40
    # The base's pretraining epochs (the tiny_base fixture: 8) beside the base folder, not inside it.
    pretrain = _scalars(pretrain_log_dir(tiny_base))
    assert sorted(pretrain["pretrain/train_loss"]) == list(range(1, 9))
    assert not (tiny_base / TB_DIR).exists()


def test_tracking_off_writes_no_events(tiny_base, tiny_federation, tmp_path):
    run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=1,
                                       tracking__tensorboard=False))
    assert (tmp_path / "results.json").is_file() and not (tmp_path / TB_DIR).exists()
