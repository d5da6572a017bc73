"""The method's FTA options (each a named config key; the paper's behaviour stays the default)
and the DRFA baseline."""

from __future__ import annotations

import datetime as dt

import pytest
import torch

from aggregator.inprocess_grid import InProcessGrid
from aggregator.server_app import run_from_values
from aggregator.strategies import project_to_simplex
from clients.client_app import app as client_app
from conftest import TINY_FED
from data_adapters.records import read_manifest
from fedtar.config import load_config
from fedtar.data.demographics import PatientAssigner
from fedtar.data.site import load_site
from fedtar.generator.model import q_dim
from fedtar.learning.temporal_policy import (
    MetaInputs,
    PolicyConfig,
    PolicyLearner,
    TemporalPolicy,
    residual_aggregate,
    residual_coefficients,
    time_features,
)


def test_without_the_anchor_c0_is_zero_and_the_rest_sum_to_one():
    alpha = torch.softmax(torch.randn(5, generator=torch.Generator().manual_seed(1)), 0)
    paper = residual_coefficients(alpha)
    free = residual_coefficients(alpha, keep_previous=False)
    assert float(paper[0]) > 0.2  # the brake the paper's recursion keeps: about (1 - 1/T)^T
    assert float(free[0]) == 0.0 and float(free.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(free[1:], paper[1:] / paper[1:].sum())
    w0 = {"w": torch.full((3,), 10.0)}
    means = [{"w": torch.full((3,), float(t))} for t in range(5)]
    out = residual_aggregate(w0, means, alpha, keep_previous=False)
    assert float(out["w"][0]) == pytest.approx(sum(float(c) * t for t, c in enumerate(free[1:])), rel=1e-6)
    assert float(residual_aggregate(w0, means, alpha)["w"][0]) > float(out["w"][0])  # w0 = 10 pulls the paper's up


def test_time_features_columns_follow_the_config():
    tf = time_features(("gap", "recency"), [0.5, 1.0, 2.0], [2012.0, 2013.5, 2016.0])
    torch.testing.assert_close(tf, torch.tensor([[0.5, 4.0], [1.0, 2.5], [2.0, 0.0]]))
    assert time_features((), [0.5], [2012.0]).shape == (1, 0)
    with pytest.raises(ValueError, match="policy.features: unknown bogus"):
        TemporalPolicy(PolicyConfig(features=("bogus",)))


def test_recency_lets_the_policy_prefer_recent_visits():
    """Visits whose states point at the optimum are the recent ones, whatever their index:
    with recency as an input the learned alpha follows it to new visit orders."""
    g = torch.Generator().manual_seed(0)
    optimum = torch.randn(40, generator=g)
    learner = PolicyLearner(PolicyConfig(meta_lr=0.05, features=("recency",)), seed=0)
    visits = torch.arange(1, 5)
    for step in range(30):
        newest = step % 4  # which visit index holds the newest exams changes every round
        years = [2015.0 - 3 * abs(t - newest) for t in range(4)]
        tf = time_features(("recency",), [0.0] * 4, years)
        means = [{"w": (optimum if t == newest else torch.randn(40, generator=g))} for t in range(4)]
        inputs = MetaInputs(visits, tf, {"w": torch.zeros(40)}, means)
        learner.meta_step(inputs, lambda w: {"w": w["w"] - optimum})
    tf = time_features(("recency",), [0.0] * 4, [2009.0, 2012.0, 2015.0, 2012.0])
    alpha = learner.alpha(visits, tf)
    assert int(alpha.argmax()) == 2 and float(alpha[2]) > 0.4, alpha


def test_more_meta_steps_move_the_policy_further():
    g = torch.Generator().manual_seed(3)
    optimum = torch.randn(20, generator=g)
    means = [{"w": torch.randn(20, generator=g)} for _ in range(3)] + [{"w": optimum.clone()}]
    inputs = MetaInputs(torch.arange(1, 5), torch.zeros(4, 1), {"w": torch.zeros(20)}, means)
    moved = []
    for steps in (1, 5):
        learner = PolicyLearner(PolicyConfig(meta_lr=0.02, meta_steps=steps), seed=0)
        learner.meta_step(inputs, lambda w: {"w": w["w"] - optimum})
        moved.append(float(learner.alpha(inputs.visits, inputs.time_features)[3]))
    assert moved[1] > moved[0] > 0.25


def test_recent_validation_keeps_only_the_latest_exams(tiny_base, tiny_federation):
    from fedtar.generator.model import load_model

    _, tokenizer = load_model(tiny_base)
    cfg = load_config(overrides=TINY_FED)
    manifest = sorted(tiny_federation.glob("*/manifest.csv"))[0]
    site = load_site(manifest, tokenizer, cfg)
    everything, recent = site.validation(1.0), site.validation(0.5)
    all_dates = sorted(everything.records[i].study_date for i in everything.rows().tolist())
    kept = [recent.records[i].study_date for i in recent.rows().tolist()]
    assert 0 < len(kept) < len(all_dates)
    assert min(kept) >= all_dates[len(all_dates) // 2 - 1] and max(kept) == all_dates[-1]


def test_profile_beside_q():
    cfg = load_config(overrides={"demographics.with_profile": True, "demographics.gmm_components": 4})
    assert q_dim(cfg) == 4 + 3
    profiles = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    q = PatientAssigner.fit(profiles, components=4, with_profile=True)(profiles)
    assert q.shape == (30, 7)
    torch.testing.assert_close(q[:, 4:], profiles)
    torch.testing.assert_close(q[:, :4].sum(-1), torch.ones(30))


def test_simplex_projection():
    x = project_to_simplex(torch.tensor([0.5, 0.9, -0.3], dtype=torch.float64))
    assert float(x.sum()) == pytest.approx(1.0) and bool((x >= 0).all())
    torch.testing.assert_close(x, torch.tensor([0.3, 0.7, 0.0], dtype=torch.float64))
    y = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    torch.testing.assert_close(project_to_simplex(y), y)


def test_drfa_and_fedtar_options_run_in_the_federation(tiny_base, tiny_federation, tmp_path):
    grid = InProcessGrid([client_app] * 3, [{"partition-id": i, "num-partitions": 3} for i in range(3)])
    base = {**TINY_FED, "base-dir": str(tiny_base), "data-root": str(tiny_federation)}
    drfa = run_from_values(grid, {**base, "out-dir": str(tmp_path / "drfa"), "federation.strategy": "drfa",
                                  "federation.rounds": 2, "federation.drfa_lr": 0.5})
    assert drfa.status == "completed" and drfa.rounds_done == 2
    lam = drfa.history[-1]["drfa-lambda"]
    assert sum(lam.values()) == pytest.approx(1.0, abs=1e-3) and max(lam.values()) > 1 / 3 + 0.01
    fedtar = run_from_values(grid, {**base, "out-dir": str(tmp_path / "fedtar"), "federation.rounds": 2,
                                    "policy.features": "gap,recency", "policy.keep_previous": False,
                                    "policy.meta_steps": 2, "meta.recent_fraction": 0.5,
                                    "demographics.with_profile": True})
    assert fedtar.status == "completed" and fedtar.rounds_done == 2
    assert fedtar.history[1]["alpha"] != fedtar.history[0]["alpha"]
