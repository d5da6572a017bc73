"""How the server combines one record's states across sites (`federation.robust`).

`none` is the sample-weighted mean, folded in one reply at a time (memory: one float64
accumulator, whatever the number of sites). The robust modes restate Flower's
(flwr.serverapp.strategy, 1.42) formulas for our per-visit records:

- `median` (FedMedian): coordinate-wise median, unweighted; the mean of the two middle
  values for an even count (numpy's median).
- `trimmed-mean` (FedTrimmedAvg, beta = `federation.trim_beta`): per coordinate, drop
  int(beta * K) lowest and highest values, unweighted mean of the rest (so with K < 1 / beta
  nothing is trimmed: 4 sites need beta >= 0.25).
- `multikrum` (MultiKrum, num_malicious_nodes = `federation.krum_byzantine`,
  num_nodes_to_select = `federation.krum_keep`): each state's score is the sum of squared
  distances to its max(1, K - f - 2) nearest others; the `krum_keep` lowest scores are kept
  and averaged with their sample weights (krum_keep = 1: classical Krum).

A robust statistic needs every site's state of the record at once: the combiner holds K
states of one record (one visit) until `result`, computed tensor by tensor (one stacked
tensor at a time). They are computed in float64 and cast back.
"""

from __future__ import annotations

from typing import Protocol

import torch

from fedtar.learning.temporal_policy import RunningMean, weighted_mean

State = dict[str, torch.Tensor]
ROBUST_MODES = ("none", "median", "trimmed-mean", "multikrum")


class Combiner(Protocol):
    count: int

    def add(self, state: State, weight: float) -> None: ...

    def result(self) -> State: ...


class RobustCombiner:
    """Collects one record's states across sites; `result` applies the robust statistic."""

    def __init__(self, mode: str, trim_beta: float = 0.2, krum_byzantine: int = 0, krum_keep: int = 1):
        if mode not in ROBUST_MODES[1:]:
            raise ValueError(f"federation.robust must be one of {', '.join(ROBUST_MODES)}, got {mode!r}")
        if not 0.0 <= trim_beta < 0.5:
            raise ValueError(f"federation.trim_beta must be in [0, 0.5), got {trim_beta}")
        if krum_byzantine < 0 or krum_keep < 1:
            raise ValueError("federation.krum_byzantine must be >= 0 and federation.krum_keep >= 1")
        self.mode, self.trim_beta, self.krum_byzantine, self.krum_keep = mode, trim_beta, krum_byzantine, krum_keep
        self.states: list[State] = []
        self.weights: list[float] = []
        self.kept: list[int] = []  # multikrum: positions (in add order) of the states averaged

    @property
    def count(self) -> int:
        return len(self.states)

    def add(self, state: State, weight: float) -> None:
        self.states.append(state)
        self.weights.append(weight)

    def result(self) -> State:
        if not self.states:
            raise ValueError("a robust aggregate of no states")
        if self.mode == "multikrum":
            self.kept = krum_select(self.states, self.krum_byzantine, self.krum_keep)
            return weighted_mean([self.states[i] for i in self.kept], [self.weights[i] for i in self.kept])
        out = {}
        for name, first in self.states[0].items():
            stacked = torch.stack([s[name].double() for s in self.states])
            if self.mode == "median":
                value = coordinate_median(stacked)
            else:
                value = trimmed_mean(stacked, self.trim_beta)
            out[name] = value.to(first.dtype)
        return out


def make_combiner(mode: str, total_weight: float, trim_beta: float = 0.2, krum_byzantine: int = 0,
                  krum_keep: int = 1) -> Combiner:
    """The running weighted mean for `none`, a RobustCombiner otherwise."""
    if mode == "none":
        return RunningMean(total_weight)
    return RobustCombiner(mode, trim_beta, krum_byzantine, krum_keep)


def coordinate_median(stacked: torch.Tensor) -> torch.Tensor:
    """numpy's median along dim 0: the middle value, or the mean of the two middle ones."""
    ordered, _ = torch.sort(stacked, dim=0)
    k = stacked.shape[0]
    if k % 2:
        return ordered[k // 2]
    return (ordered[k // 2 - 1] + ordered[k // 2]) / 2


def trimmed_mean(stacked: torch.Tensor, beta: float) -> torch.Tensor:
    """Flower's trim_mean (scipy.stats.trim_mean along dim 0): int(beta * K) cut from each tail."""
    k = stacked.shape[0]
    cut = int(beta * k)
    ordered, _ = torch.sort(stacked, dim=0)
    return ordered[cut:k - cut].mean(dim=0)


def pairwise_sq_distances(states: list[State]) -> torch.Tensor:
    """K x K squared L2 distances over all tensors, accumulated tensor by tensor (float64)."""
    k = len(states)
    dist = torch.zeros(k, k, dtype=torch.float64)
    for name in states[0]:
        flat = torch.stack([s[name].double().reshape(-1) for s in states])
        dist += torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    return dist


def krum_select(states: list[State], byzantine: int, keep: int) -> list[int]:
    """Positions of the `keep` states with the lowest Krum scores (ties: the earlier state)."""
    k = len(states)
    if k <= keep:
        return list(range(k))
    dist = pairwise_sq_distances(states)
    closest = max(1, k - byzantine - 2)
    scores = []
    for i in range(k):
        others = torch.cat([dist[i, :i], dist[i, i + 1:]])
        scores.append(float(torch.sort(others).values[:closest].sum()))
    order = sorted(range(k), key=lambda i: (scores[i], i))
    return sorted(order[:keep])
