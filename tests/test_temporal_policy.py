"""Temporal residual aggregation and the first-order meta-learned policy."""

from __future__ import annotations

import pytest
import torch

from fedtar.learning.temporal_policy import (
    MetaInputs,
    PolicyConfig,
    PolicyLearner,
    TemporalPolicy,
    hypergradient_surrogate,
    residual_aggregate,
    residual_coefficients,
    weighted_mean,
)


def _states(n: int, seed: int, shape=(3, 4)):
    g = torch.Generator().manual_seed(seed)
    return [{"a": torch.randn(shape, generator=g), "b": torch.randn(5, generator=g)} for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_coefficients_are_a_convex_combination(seed):
    alpha = torch.softmax(torch.randn(6, generator=torch.Generator().manual_seed(seed)), 0)
    c = residual_coefficients(alpha)
    assert (c >= 0).all()
    assert float(c.sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_recursion_equals_closed_form_and_step_bound(seed):
    w0, *means = _states(5, seed)
    alpha = torch.softmax(torch.randn(4, generator=torch.Generator().manual_seed(seed + 10)), 0)
    # Recursion step by step, checking ||w^t - w^{t-1}|| <= alpha_t ||w_bar^t - w^{t-1}||.
    w = w0
    for t in range(4):
        nxt = residual_aggregate(w, [means[t]], alpha[t:t + 1])
        step = sum(float((nxt[k] - w[k]).norm() ** 2) for k in w) ** 0.5
        gap = sum(float((means[t][k] - w[k]).norm() ** 2) for k in w) ** 0.5
        assert step <= float(alpha[t]) * gap + 1e-6
        w = nxt
    full = residual_aggregate(w0, means, alpha)
    c = residual_coefficients(alpha)
    closed = {k: c[0] * w0[k] + sum(c[t + 1] * means[t][k] for t in range(4)) for k in w0}
    for k in w0:
        torch.testing.assert_close(full[k], closed[k], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(full[k], w[k], atol=1e-5, rtol=1e-5)


def test_weighted_mean_is_sample_weighted():
    s = [{"x": torch.tensor([0.0])}, {"x": torch.tensor([10.0])}]
    assert float(weighted_mean(s, [3, 1])["x"]) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        weighted_mean(s, [0, 0])


def test_uniform_policy():
    policy = TemporalPolicy(PolicyConfig(kind="uniform"))
    assert torch.allclose(policy.alpha(torch.arange(1, 5)), torch.full((4,), 0.25))


def test_first_order_hypergradient_matches_finite_differences():
    torch.manual_seed(0)
    cfg = PolicyConfig(hidden=4, embed_dim=3)
    policy = TemporalPolicy(cfg).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0, 0.5)
    w0, *means = [{k: v.double() for k, v in s.items()} for s in _states(4, 3)]
    target = {k: torch.randn_like(v) for k, v in w0.items()}
    visits, tf = torch.arange(1, 4), torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64)

    def val_loss() -> torch.Tensor:  # L(w^T(psi)) = 0.5 ||w^T - target||^2, w^T in closed form
        c = residual_coefficients(policy.alpha(visits, tf))
        wT = {k: c[0] * w0[k] + sum(c[t + 1] * means[t][k] for t in range(3)) for k in w0}
        return 0.5 * sum(((wT[k] - target[k]) ** 2).sum() for k in w0)

    with torch.no_grad():
        c = residual_coefficients(policy.alpha(visits, tf))
        wT = {k: c[0] * w0[k] + sum(c[t + 1] * means[t][k] for t in range(3)) for k in w0}
    grad_w = {k: wT[k] - target[k] for k in w0}  # grad of L at w^T
    policy.zero_grad()
    # hypergradient_surrogate builds its scores in float32: evaluate it on a float64 policy copy.
    surrogate = hypergradient_surrogate(policy, MetaInputs(visits, tf, w0, means), grad_w)
    surrogate.backward()
    analytic = torch.cat([p.grad.flatten() for p in policy.parameters()])
    numeric = []
    eps = 1e-6
    for p in policy.parameters():
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + eps
            up = float(val_loss().detach())
            flat[i] = old - eps
            down = float(val_loss().detach())
            flat[i] = old
            numeric.append((up - down) / (2 * eps))
    torch.testing.assert_close(analytic, torch.tensor(numeric, dtype=analytic.dtype), atol=1e-4, rtol=1e-3)


def test_meta_learning_moves_weight_to_the_useful_visit():
    """Visit 2's updates point at the optimum, the others are noise: alpha_2 must grow."""
    g = torch.Generator().manual_seed(0)
    optimum = {"w": torch.randn(50, generator=g)}
    learner = PolicyLearner(PolicyConfig(meta_lr=0.05), seed=0)
    visits, tf = torch.arange(1, 5), torch.ones(4, 1)
    w = {"w": torch.zeros(50)}
    start = learner.alpha(visits, tf)
    for _ in range(5):
        means = [{"w": w["w"] + torch.randn(50, generator=g)} for _ in range(4)]
        means[1] = {"w": optimum["w"] + 0.05 * torch.randn(50, generator=g)}
        inputs = MetaInputs(visits, tf, w, means)
        w = residual_aggregate(w, means, learner.alpha(visits, tf))
        learner.meta_step(inputs, {"w": w["w"] - optimum["w"]})  # grad of 0.5||w - w*||^2
    end = learner.alpha(visits, tf)
    assert float(start[1]) == pytest.approx(0.25, abs=1e-6)
    assert float(end[1]) > 0.4 and int(end.argmax()) == 1


def test_policy_state_round_trip():
    a, b = PolicyLearner(PolicyConfig(meta_lr=0.1), 0), PolicyLearner(PolicyConfig(meta_lr=0.1), 1)
    w0, *means = _states(3, 0)
    a.meta_step(MetaInputs(torch.arange(1, 3), torch.ones(2, 1), w0, means), w0)
    b.load_state_dict(a.state_dict())
    v, tf = torch.arange(1, 3), torch.ones(2, 1)
    assert torch.equal(a.alpha(v, tf), b.alpha(v, tf))
