"""The change head: what changed since the prior exam, per observation, read from both images.

Why it exists (issue 19): a decoder that gets the current and the prior image tokens side by
side has to learn to compare them through cross-attention, and a report's few change words are
a small share of its loss; every generator, the centralized one included, stated the right
change for only 12-15% of the reference's change statements, while a small CNN given the
(prior, current, difference) images read the change almost perfectly. This head does that
comparison explicitly:

- each current token is paired with the prior token at the same position (the encoders are
  shared, so positions align) and a small MLP reads [current, prior, current - prior];
- one learned query per CheXpert observation pools those tokens (where a finding sits differs
  per finding), and a linear layer classifies the change: none / new / increased / decreased /
  unchanged / resolved (data_adapters.findings.CHANGE_TARGETS);
- the pooled features and the class probabilities become one memory token per observation
  that the decoder's cross-attention reads beside the image tokens (`model.change_head`);
- `model.change_loss` > 0 supervises the classifier with the change between the prior's and
  the current exam's labels (a progression-classification loss, as BioViL-T's MS-CXR-T
  measures temporal understanding), so the head learns even where a report's change words are
  too rare a share of the report loss to teach it;
- `model.change_teacher`: while training, the memory tokens carry the true change where it is
  known (the plan a decoder learns to verbalise), the head's prediction at test time: the decoder
  learns to state the plan it is given instead of learning to distrust a noisy one.

It is small (`model.change_width`) and trainable under a frozen base, so it travels. With a change
loss, a run's train loss is the objective (report + weighted change loss); evaluation losses are the
report's alone (ReportGenerator.forward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from data_adapters.findings import CHANGE_TARGETS, CHEXPERT_OBSERVATIONS

CHANGE_HEAD = "change_head"  # the module's name in ReportGenerator: a marker of trainable, travelling tensors


class ChangeHead(nn.Module):
    def __init__(self, dim: int, width: int = 64, observations: int = len(CHEXPERT_OBSERVATIONS)):
        super().__init__()
        self.tokens = nn.Sequential(nn.Linear(3 * dim, width), nn.GELU(), nn.Linear(width, width))
        self.queries = nn.Parameter(torch.randn(observations, width) / width ** 0.5)
        self.classify = nn.Linear(width, len(CHANGE_TARGETS))
        self.to_memory = nn.Linear(width, dim)
        # Which observation a token is and what its predicted change is, as distinct directions: the
        # decoder's cross-attention must find "the consolidation token" while it writes about
        # consolidation, which zero-initialised identities would not let it do.
        self.observation = nn.Parameter(torch.randn(observations, dim))
        self.change_class = nn.Parameter(torch.randn(len(CHANGE_TARGETS), dim))

    def forward(self, current: torch.Tensor, prior: torch.Tensor, teacher: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Change logits (B, O, classes) and memory tokens (B, O, dim) from position-aligned tokens (B, M, dim).
        `teacher` (B, O): the true classes (-100 unknown) that the memory tokens carry instead of the
        predicted ones while training (`model.change_teacher`)."""
        h = self.tokens(torch.cat([current, prior, current - prior], dim=-1))             # (B, M, W)
        attention = torch.einsum("ow,bmw->bom", self.queries, h).softmax(dim=-1)         # (B, O, M)
        pooled = attention @ h                                                           # (B, O, W)
        logits = self.classify(pooled)
        probs = logits.softmax(-1).to(pooled.dtype)
        if teacher is not None:
            known = (teacher >= 0)[..., None]
            probs = torch.where(known, F.one_hot(teacher.clamp(min=0), probs.shape[-1]).to(probs.dtype), probs)
        memory = self.to_memory(pooled) + probs @ self.change_class
        return logits, memory + self.observation


def change_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the (exam, observation) pairs whose change is known (targets >= 0);
    zero (with a graph) when none is, e.g. a batch of first visits or data without labels."""
    known = targets >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known].float(), targets[known])
