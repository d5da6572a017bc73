"""Temporal residual aggregation and its meta-learned policy (DESIGN.md sections 4-5).

Per visit t the sites' states are averaged (w_bar^t); starting from the
previous global w^0 the server steps towards each visit's mean in turn:

    w^t = w^{t-1} + alpha_t (w_bar^t - w^{t-1}),   t = 1..T,   new global = w^T

which is the convex combination w^T = c_0 w^0 + sum_t c_t w_bar^t with
c_t = alpha_t prod_{s>t} (1 - alpha_s) and c_0 = prod_s (1 - alpha_s).

alpha = softmax(u), u_t = g(e(t); psi), with e(t) a learned visit embedding
(the paper's input) plus, as our additions, time features of the visit's exams
(`policy.features`): "gap", mean years since the previous visit, and "recency",
years between the visit's mean study date and the round's newest visit (calendar
drift: the newest exams carry the current scanner and reporting template). The
first-order meta step treats the w_bar^t as constants:
dL/dc_t = <grad L_val(w^T), w_bar^t>, so the hypergradient is a handful of inner
products pushed through c(alpha(psi)).

`policy.keep_previous = false` (ours) drops the anchor c_0 w^0 and renormalises
c_1..c_T: with softmax alpha, c_0 = prod(1 - alpha_t) keeps about (1 - 1/T)^T of
the previous global each round (0.33 at T = 5), a brake the paper's recursion has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

State = Mapping[str, torch.Tensor]


TIME_FEATURES = ("gap", "recency")


@dataclass
class PolicyConfig:
    kind: str = "learned"      # learned | uniform (ablation: alpha_t = 1/T)
    embed_dim: int = 8
    hidden: int = 16
    features: tuple[str, ...] = ("gap",)  # time features beside e(t): gap | recency (empty: the paper's e(t))
    max_visits: int = 32
    meta_lr: float = 1e-4      # the paper's meta learning rate
    meta_steps: int = 1        # policy steps per round (server validation: the gradient is recomputed each step)
    keep_previous: bool = True  # the paper's recursion from the previous global (c_0 > 0); false: c_0 = 0


class TemporalPolicy(nn.Module):
    """alpha = softmax(g(e(t); psi)) over the visits of one round."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        if cfg.kind not in ("learned", "uniform"):
            raise ValueError(f"policy.kind must be learned or uniform, got {cfg.kind!r}")
        unknown = [f for f in cfg.features if f not in TIME_FEATURES]
        if unknown:
            raise ValueError(f"policy.features: unknown {', '.join(unknown)} (known: {', '.join(TIME_FEATURES)})")
        self.cfg = cfg
        self.n_time_features = len(cfg.features)
        self.visit_embedding = nn.Embedding(cfg.max_visits + 1, cfg.embed_dim)
        self.g = nn.Sequential(nn.Linear(cfg.embed_dim + self.n_time_features, cfg.hidden), nn.Tanh(),
                               nn.Linear(cfg.hidden, 1))
        nn.init.zeros_(self.g[-1].weight)  # start uniform: no visit is preferred before evidence
        nn.init.zeros_(self.g[-1].bias)

    def alpha(self, visits: torch.Tensor, time_features: torch.Tensor | None = None) -> torch.Tensor:
        """(T,) weights for visit indices `visits` (1-based) with (T, F) time features
        (columns in the order of `policy.features`)."""
        if self.cfg.kind == "uniform":
            return torch.full((len(visits),), 1.0 / len(visits))
        if int(visits.max()) > self.cfg.max_visits:
            raise ValueError(f"visit index {int(visits.max())} exceeds policy.max_visits={self.cfg.max_visits}")
        e = self.visit_embedding(visits)
        if self.n_time_features:
            tf = time_features if time_features is not None else torch.zeros(len(visits), self.n_time_features)
            e = torch.cat([e, tf.to(e.dtype)], dim=-1)
        return torch.softmax(self.g(e).squeeze(-1), dim=0)


def time_features(features: Sequence[str], gap_years: Sequence[float], mean_years: Sequence[float]
                  ) -> torch.Tensor:
    """(T, F) policy inputs per visit: "gap" (mean years since the previous visit) and
    "recency" (years from the visit's mean study date to the round's newest visit)."""
    newest = max(mean_years) if len(mean_years) else 0.0
    columns = {"gap": list(gap_years), "recency": [newest - y for y in mean_years]}
    if not features:
        return torch.zeros(len(gap_years), 0)
    return torch.tensor([columns[f] for f in features], dtype=torch.float32).T.contiguous()


def residual_coefficients(alpha: torch.Tensor, keep_previous: bool = True) -> torch.Tensor:
    """[c_0, c_1, ..., c_T] of the closed form (differentiable in alpha).

    keep_previous = false: c_0 = 0 and c_1..c_T rescaled to sum to 1.
    """
    one_minus = 1 - alpha
    # suffix[t] = prod_{s > t} (1 - alpha_s) for t = 0..T-1 (0-based over visits), and 1 for the last.
    suffix = torch.flip(torch.cumprod(torch.flip(torch.cat([one_minus[1:], alpha.new_ones(1)]), [0]), 0), [0])
    c = alpha * suffix
    c0 = torch.prod(one_minus)
    if not keep_previous:
        return torch.cat([torch.zeros_like(c0).view(1), c / c.sum()])
    return torch.cat([c0.view(1), c])


class RunningMean:
    """sum_k (n_k / n) state_k folded in one state at a time (float64 accumulators), so a
    caller can drop each state once added. The total n is given up front: every term is
    scaled before it is added, which makes the sum bit-identical to adding the same states
    in the same order in one go, whatever else the caller holds."""

    def __init__(self, total: float):
        self.total, self.count = float(total), 0
        if self.total <= 0:
            raise ValueError("a weighted mean needs a positive total weight")
        self._acc: dict[str, torch.Tensor] = {}
        self._dtypes: dict[str, torch.dtype] = {}

    def add(self, state: Mapping[str, torch.Tensor], weight: float) -> None:
        if not self.count:
            self._dtypes = {name: value.dtype for name, value in state.items()}
            self._acc = {name: torch.zeros_like(value, dtype=torch.float64) for name, value in state.items()}
        for name, value in state.items():
            self._acc[name] += value.double() * (weight / self.total)
        self.count += 1

    def result(self) -> dict[str, torch.Tensor]:
        if not self.count:
            raise ValueError("a weighted mean of no states")
        return {name: acc.to(self._dtypes[name]) for name, acc in self._acc.items()}


def weighted_mean(states: Iterable[State], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_k (n_k / n) state_k, tensor by tensor (float64 accumulation); `states` may be a
    generator, each state dropped once it is added."""
    mean = RunningMean(sum(weights))
    for s, w in zip(states, weights):
        mean.add(s, w)
    return mean.result()


def residual_aggregate(w0: State, visit_means: Sequence[State], alpha: torch.Tensor,
                       keep_previous: bool = True) -> dict[str, torch.Tensor]:
    """The recursion w^t = w^{t-1} + alpha_t (w_bar^t - w^{t-1}); returns w^T.

    keep_previous = false: the closed form without its c_0 w^0 term (renormalised).
    """
    if not keep_previous:
        c = residual_coefficients(alpha, keep_previous=False)[1:].tolist()
        return {k: sum(ci * m[k].double() for ci, m in zip(c, visit_means)).to(w0[k].dtype) for k in w0}
    w = {k: v.double() for k, v in w0.items()}
    for a, wbar in zip(alpha.tolist(), visit_means):
        w = {k: w[k] + a * (wbar[k].double() - w[k]) for k in w}
    return {k: v.to(w0[k].dtype) for k, v in w.items()}


def inner(a: State, b: State) -> float:
    return float(sum((a[k].double() * b[k].double()).sum() for k in a))


@dataclass
class MetaInputs:
    """What the meta step needs from one aggregation: kept one round when the gradient lags."""

    visits: torch.Tensor
    time_features: torch.Tensor
    w0: dict[str, torch.Tensor]
    visit_means: list[dict[str, torch.Tensor]]


def hypergradient_surrogate(policy: TemporalPolicy, inputs: MetaInputs, grad: State) -> torch.Tensor:
    """A scalar whose gradient in psi is the first-order hypergradient dL_val/dpsi.

    sum_t c_t(psi) <g, W_t> with <g, W_t> held constant (W_0 = w^0, W_t = w_bar^t).
    """
    scores = torch.tensor([inner(grad, inputs.w0)] + [inner(grad, m) for m in inputs.visit_means],
                          dtype=torch.float32)
    c = residual_coefficients(policy.alpha(inputs.visits, inputs.time_features), policy.cfg.keep_previous)
    return (c * scores).sum()


class PolicyLearner:
    """The temporal policy with its AdamW optimizer: server state, checkpointed with the model."""

    def __init__(self, cfg: PolicyConfig, seed: int = 0):
        torch.manual_seed(seed)
        self.policy = TemporalPolicy(cfg)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=cfg.meta_lr, weight_decay=0.0)

    def alpha(self, visits: torch.Tensor, time_features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.policy.alpha(visits, time_features)

    def aggregate(self, inputs: MetaInputs) -> dict[str, torch.Tensor]:
        """w^T for these inputs under the current policy."""
        return residual_aggregate(inputs.w0, inputs.visit_means, self.alpha(inputs.visits, inputs.time_features),
                                  self.policy.cfg.keep_previous)

    def meta_step(self, inputs: MetaInputs, grad: State | Callable[[State], State]) -> float:
        """`policy.meta_steps` first-order steps of psi; returns the last surrogate's value (for logs).

        `grad` is the validation gradient at w^T, or a function of w^T that gives it (then it is
        recomputed at each step's new w^T; a fixed gradient is reused, as the federated one must be).
        """
        if self.policy.cfg.kind == "uniform":
            return float("nan")
        value = float("nan")
        for _ in range(max(1, self.policy.cfg.meta_steps)):
            g = grad(self.aggregate(inputs)) if callable(grad) else grad
            self.optimizer.zero_grad()
            surrogate = hypergradient_surrogate(self.policy, inputs, g)
            surrogate.backward()
            self.optimizer.step()
            value = float(surrogate.detach())
        return value

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
