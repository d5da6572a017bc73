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
