"""The clinical vocabulary shared by data generation, labelling and evaluation.

One place that knows the 14 CheXpert observation names and the five
comparison-to-prior classes, so the synthetic generator, the rule-based
labeler and the temporal metric cannot drift apart on spelling.
"""

from __future__ import annotations

CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# Change of a finding between the prior exam and the current one.
CHANGE_CLASSES: tuple[str, ...] = ("new", "increased", "decreased", "unchanged", "resolved")


def change_between(prior_severity: int, current_severity: int) -> str | None:
    """The comparison-to-prior class implied by two severities (None: absent both times)."""
    if prior_severity == 0 and current_severity == 0:
        return None
    if prior_severity == 0:
        return "new"
    if current_severity == 0:
        return "resolved"
    if current_severity > prior_severity:
        return "increased"
    if current_severity < prior_severity:
        return "decreased"
    return "unchanged"


# What the change head predicts per observation: no statement (absent both times), or a change class.
CHANGE_TARGETS: tuple[str, ...] = ("none", *CHANGE_CLASSES)


def change_targets(prior: "torch.Tensor", current: "torch.Tensor") -> "torch.Tensor":
    """`change_between` over tensors of severities: the index into CHANGE_TARGETS, -100 where
    either severity is unknown (negative). Vectorized: one call per batch, no loop over rows."""
    import torch

    p, c = prior.long(), current.long()
    cls = torch.full_like(c, CHANGE_TARGETS.index("unchanged"))
    cls = torch.where(c > p, CHANGE_TARGETS.index("increased"), cls)
    cls = torch.where(c < p, CHANGE_TARGETS.index("decreased"), cls)
    cls = torch.where((p == 0) & (c > 0), CHANGE_TARGETS.index("new"), cls)
    cls = torch.where((p > 0) & (c == 0), CHANGE_TARGETS.index("resolved"), cls)
    cls = torch.where((p == 0) & (c == 0), CHANGE_TARGETS.index("none"), cls)
    return torch.where((p < 0) | (c < 0), torch.full_like(cls, -100), cls)
