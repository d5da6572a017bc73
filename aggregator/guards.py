"""Server-side checks on every reply before it is aggregated.

A reply is left out of the round, with its reason logged, when it is an
error, lacks or adds tensors, has a wrong shape or dtype, holds NaN/Inf, or
moves the model much further than the round's other replies (update norm
above `norm_bound` x the round's median, when at least three replies
compare).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field

import torch

from fedtar.generator.parameters import TensorSpec

log = logging.getLogger(__name__)
State = dict[str, torch.Tensor]


@dataclass
class Rejection:
    node_id: int
    reason: str


@dataclass
class GuardReport:
    accepted: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def check_state(state: State, specs: list[TensorSpec]) -> str | None:
    """None if `state` is exactly the declared travelling set with finite values, else why not."""
    expected = {s.name: s for s in specs}
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing:
        return f"missing tensor(s) {missing[:3]}"
    if extra:
        return f"unexpected tensor(s) {extra[:3]}"
    for name, value in state.items():
        spec = expected[name]
        if tuple(value.shape) != spec.shape:
            return f"{name}: shape {tuple(value.shape)}, expected {spec.shape}"
        if value.dtype != spec.dtype:
            return f"{name}: dtype {value.dtype}, expected {spec.dtype}"
        if not torch.isfinite(value).all():
            return f"{name}: non-finite values (NaN or Inf)"
    return None


def update_norm(state: State, reference: State) -> float:
    return float(sum(float((state[k].double() - reference[k].double()).pow(2).sum()) for k in reference)) ** 0.5


def norm_outliers(norms: dict[int, float], bound: float) -> dict[int, str]:
    """Replies whose update norm exceeds bound x the median of the round's norms."""
    if len(norms) < 3 or bound <= 0:
        return {}
    median = statistics.median(norms.values())
    return {nid: f"update norm {n:.3g} > {bound:g} x round median {median:.3g}"
            for nid, n in norms.items() if median > 0 and n > bound * median}
