"""The learnability ceiling of comparison-to-prior: how well can the change be read from the pixels?

A report generator can only state a change it can see. This probe is a small CNN trained
centrally, with full supervision, on the change class of every (exam, observation) pair
(none / new / increased / decreased / unchanged / resolved, from the prior's and the current
exam's labels), reading the prior image, the current image and their difference at the
benchmark's reading size. Its accuracy on the test split, over the pairs whose reference states
a change, is the ceiling that comparison-to-prior accuracy (fedtar.scoring.metrics.temporal) is read
against: a generator near it states what can be seen; one far below does not compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data_adapters.findings import CHANGE_TARGETS, CHEXPERT_OBSERVATIONS
from fedtar.data.exams import Exams

NONE = CHANGE_TARGETS.index("none")


class ChangeProbe(nn.Module):
    """(prior, current, current - prior) -> change logits per observation (B, O, classes)."""

    def __init__(self, channels: int = 1, width: int = 32, observations: int = len(CHEXPERT_OBSERVATIONS)):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3 * channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(2 * width * 16, observations * len(CHANGE_TARGETS))
        self.observations = observations

    def forward(self, prior: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        x = torch.cat([prior, current, current - prior], dim=1)
        return self.head(self.features(x)).view(x.shape[0], self.observations, len(CHANGE_TARGETS))


@dataclass
class Ceiling:
    overall: float                      # accuracy over the test pairs whose reference states a change
    per_observation: dict[str, float]   # the same per observation (observations with such pairs only)
    statements: dict[str, int]          # how many such pairs each observation has
    chance: float                       # the majority class's share of those pairs


def train_probe(train: Exams, epochs: int = 30, batch_size: int = 64, lr: float = 2e-3,
                seed: int = 0) -> ChangeProbe:
    """Fit the probe on every training exam that has a prior (batched; images streamed). The loss is
    class-balanced: "none" (absent both times) outnumbers every change, and an unweighted probe
    on a small federation learns to say "none" everywhere."""
    torch.manual_seed(seed)
    probe = ChangeProbe(channels=_channels(train))
    weight = _balanced_weights(train)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    probe.train()
    for _ in range(epochs):
        for batch in train.batches(batch_size, shuffle=True, generator=generator):
            known = batch.change >= 0
            if not bool(known.any()):
                continue
            logits = probe(batch.prior_images, batch.images)
            loss = F.cross_entropy(logits[known], batch.change[known], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return probe.eval()


@torch.no_grad()
def measure_ceiling(probe: ChangeProbe, test: Exams, batch_size: int = 128) -> Ceiling:
    """Accuracy on the (exam, observation) pairs whose true change is a change statement (not none),
    the pairs comparison-to-prior accuracy counts."""
    right = torch.zeros(len(CHEXPERT_OBSERVATIONS))
    total = torch.zeros(len(CHEXPERT_OBSERVATIONS))
    classes = torch.zeros(len(CHANGE_TARGETS))
    for batch in test.batches(batch_size):
        stated = (batch.change >= 0) & (batch.change != NONE)
        if not bool(stated.any()):
            continue
        hit = (probe(batch.prior_images, batch.images).argmax(-1) == batch.change) & stated
        right += hit.sum(0).float()
        total += stated.sum(0).float()
        classes += torch.bincount(batch.change[stated], minlength=len(CHANGE_TARGETS)).float()
    named = {o: (float(right[i] / total[i]), int(total[i])) for i, o in enumerate(CHEXPERT_OBSERVATIONS) if total[i]}
    n = float(total.sum())
    return Ceiling(overall=float(right.sum()) / n if n else float("nan"),
                   per_observation={o: acc for o, (acc, _) in named.items()},
                   statements={o: k for o, (_, k) in named.items()},
                   chance=float(classes.max()) / n if n else float("nan"))


def _balanced_weights(exams: Exams) -> torch.Tensor:
    """Inverse class frequencies of the known targets, normalised to mean 1 (absent classes weigh 0).
    Counted from the labels and prior links the batches' targets come from: no image is read."""
    rows = exams.rows()
    prior = exams.prior_index[rows]
    change = exams._change(rows, prior, prior >= 0)
    counts = torch.bincount(change[change >= 0], minlength=len(CHANGE_TARGETS)).float()
    weight = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return weight * (counts > 0).sum() / weight.sum().clamp(min=1e-12)


def _channels(exams: Exams) -> int:
    first = next(exams.batches(1), None)
    if first is None:
        raise ValueError("no exams to train the change probe on")
    return first.images.shape[1]
