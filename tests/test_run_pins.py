"""Issue 13, runs pin what they depend on: base and config hashes in run.json and every checkpoint;
--resume and evaluate refuse a mismatch; a rerun never mixes with an earlier run's files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from aggregator.checkpoint import load_trained
from aggregator.server_app import run_from_values
from fedtar.trust.base_hash import base_sha256
from test_federation import grid_for, values


def test_run_json_and_checkpoints_carry_both_hashes(tiny_base, tiny_federation, tmp_path):
    run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=1))
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["base_sha256"] == base_sha256(tiny_base) and len(run["config_sha256"]) == 64
    ckpt = torch.load(tmp_path / "checkpoints" / "round-0001.pt", weights_only=False)
    assert ckpt["pins"] == {"base_sha256": run["base_sha256"], "config_sha256": run["config_sha256"]}


def test_resume_refuses_a_changed_config_unless_named_and_records_it(tiny_base, tiny_federation, tmp_path):
    run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=1))
    changed = values(tiny_base, tiny_federation, tmp_path, federation__rounds=2, resume=True, train__lr=5e-3,
                     lora__alpha=1)
    with pytest.raises(ValueError) as e:
        run_from_values(grid_for(), changed)
    assert "lora.alpha: 8.0 in the checkpoint, 1.0 now" in str(e.value) and "train.lr: 0.001" in str(e.value)
    with pytest.raises(ValueError, match="--resume-override lora.alpha: only keys under train"):
        run_from_values(grid_for(), {**changed, "resume-override": "train.lr,lora.alpha"})
    changed["lora.alpha"] = 8  # back to the run's value
    result = run_from_values(grid_for(), {**changed, "resume-override": "train.lr"})
    assert result.status == "completed" and "config_changes" not in result.history[0]
    assert result.history[1]["config_changes"] == {"train.lr": [1e-3, 5e-3]}
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["resumes"] == [{"after_round": 1, "config_changes": {"train.lr": [1e-3, 5e-3]}}]


def test_a_retrained_base_is_refused_by_resume_and_evaluate(tiny_base, tiny_federation, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    run_from_values(grid_for(), values(base, tiny_federation, tmp_path / "run", federation__rounds=1))
    before = base_sha256(base)
    (base / "notes.txt").write_text("retrained in place\n")
    after = base_sha256(base)
    with pytest.raises(ValueError, match=f"sha256 {before}, the base given now has sha256 {after}"):
        run_from_values(grid_for(), values(base, tiny_federation, tmp_path / "run", federation__rounds=2,
                                           resume=True))
    with pytest.raises(ValueError, match=f"sha256 {before}; that folder now has sha256 {after}"):
        load_trained(tmp_path / "run")


def test_a_rerun_without_resume_refuses_or_starts_clean(tiny_base, tiny_federation, tmp_path):
    run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=2))
    received = (tmp_path / "received.jsonl").read_text().splitlines()
    with pytest.raises(ValueError, match="holds an earlier run .*pass --resume to continue it, or --overwrite"):
        run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=1))
    assert (tmp_path / "checkpoints" / "round-0002.pt").is_file()
    run_from_values(grid_for(), values(tiny_base, tiny_federation, tmp_path, federation__rounds=1, overwrite=True))
    assert not (tmp_path / "checkpoints" / "round-0002.pt").exists()
    lines = [json.loads(x) for x in (tmp_path / "received.jsonl").read_text().splitlines()]
    assert {x["round"] for x in lines} == {1} and len(lines) < len(received)
