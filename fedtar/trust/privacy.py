"""Client-level differential privacy: clip each site's upload, add Gaussian noise to the means.

The scheme of Flower's client-side fixed-clipping wrappers (McMahan et al., 2018),
restated for our per-visit messages, which Flower's wrappers (one ArrayRecord per
reply) cannot carry:

- at the site, the whole upload of a round (all T per-visit states, as updates from
  the global it received) is scaled so that its joint L2 norm is at most ``clip``;
- at the server, every mean of site states gets N(0, (noise_multiplier * clip / m)^2)
  per coordinate, m the number of sites in that mean;
- the privacy spent is accounted over rounds with Opacus's RDP accountant (each round
  one step with sampling rate = sites asked / sites in the federation) and logged as
  epsilon at the configured delta.

The guarantee is the standard one for equal site weights; means stay example-weighted
as in the non-DP run (as Flower's wrappers do), so with noise 0 and a large clip a DP
run equals the plain run. Not combined with SCAFFOLD or federated meta-validation
(their control variates and validation gradients would need their own clipping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

State = dict[str, torch.Tensor]


@dataclass
class PrivacyConfig:
    clip: float = 0.0              # joint L2 bound of a site's upload per round; 0: DP off
    noise_multiplier: float = 0.0  # z: noise std = z * clip / (sites in the mean)
    delta: float = 1e-5            # epsilon is reported at this delta

    @property
    def enabled(self) -> bool:
        return self.clip > 0


def clip_upload(states: list[State], reference: State, clip: float) -> tuple[list[State], float]:
    """Scale all states' updates from `reference` together to joint norm <= clip. Returns the norm before."""
    sq = 0.0
    for s in states:
        for k, v in s.items():
            sq += float((v.double() - reference[k].double()).pow(2).sum())
    norm = math.sqrt(sq)
    if norm <= clip:
        return states, norm
    scale = clip / norm
    clipped = [{k: (reference[k].double() + (v.double() - reference[k].double()) * scale).to(v.dtype)
                for k, v in s.items()} for s in states]
    return clipped, norm


def add_noise(state: State, std: float, generator: torch.Generator) -> State:
    if std <= 0:
        return state
    return {k: (v.double() + torch.randn(v.shape, generator=generator, dtype=torch.float64) * std).to(v.dtype)
            for k, v in state.items()}


class PrivacyAccountant:
    """Opacus's RDP accountant over federation rounds."""

    def __init__(self, cfg: PrivacyConfig):
        from opacus.accountants import RDPAccountant

        self.cfg, self.accountant = cfg, RDPAccountant()

    def step(self, sample_rate: float) -> None:
        self.accountant.step(noise_multiplier=self.cfg.noise_multiplier, sample_rate=sample_rate)

    def epsilon(self) -> float:
        if not self.accountant.history:
            return 0.0
        if self.cfg.noise_multiplier <= 0:
            return math.inf
        return float(self.accountant.get_epsilon(delta=self.cfg.delta))

    def state_dict(self) -> list[tuple[float, float, int]]:
        return list(self.accountant.history)

    def load_state_dict(self, history: list) -> None:
        self.accountant.history = [tuple(h) for h in history]
