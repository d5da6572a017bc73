"""How the synthetic radiologists write.

Three phrasing lexicons (one per site, the site difference in reporting
style) and three sentence templates by calendar era (the temporal drift in
reporting style). Age and sex drive statements the image does not show
(degenerative spine, breast soft tissue; with the demographic signal on, also
aortic calcification from 75), which only a demographics-aware model can get
right. Reports of visits 2..T open with comparison-to-prior statements that
follow the ground-truth change labels.

A fourth lexicon and a structured section style ("Comparison:", "Lungs and
heart:", "Other:") form the new template a site adopts at its drift event.
"""

from __future__ import annotations

from .patients import LATERAL_FINDINGS, PRESENCE_ONLY

# Lexicons 0-2 belong to sites (index % 3); lexicon 3 is the post-drift-event template.
NAMES: dict[str, tuple[str, str, str, str]] = {
    "Cardiomegaly": ("cardiomegaly", "enlarged cardiac silhouette", "cardiac enlargement", "enlarged heart"),
    "Pleural Effusion": ("pleural effusion", "pleural fluid", "effusion", "layering pleural effusion"),
    "Consolidation": ("consolidation", "airspace consolidation", "consolidative opacity", "focal consolidation"),
    "Pneumothorax": ("pneumothorax", "pneumothorax", "pneumothorax", "apical pneumothorax"),
    "Atelectasis": ("atelectasis", "subsegmental atelectasis", "atelectatic change", "basilar atelectasis"),
    "Lung Lesion": ("pulmonary nodule", "lung nodule", "nodular lesion", "solitary pulmonary nodule"),
    "Edema": ("pulmonary edema", "interstitial edema", "edema", "pulmonary vascular congestion"),
    "Support Devices": ("central venous catheter", "feeding tube", "support line", "endotracheal tube"),
}
SEVERITY_WORDS: tuple[tuple[str, str, str], ...] = (
    ("mild", "moderate", "severe"),
    ("small", "moderate", "large"),
    ("minimal", "moderate", "marked"),
    ("trace", "moderate", "extensive"),
)
SIDE_WORDS: tuple[dict[str, str], ...] = (
    {"left": "left", "right": "right"},
    {"left": "left-sided", "right": "right-sided"},
    {"left": "left", "right": "right"},
    {"left": "left", "right": "right"},
)
POSITIVE_TEMPLATES = ("There is {sev} {side}{name}.", "{sev} {side}{name} is seen.", "{side}{name}, {sev}.")
DEVICE_TEMPLATES = ("There is a {name} in place.", "A {name} is in place.", "{name} in place.")
NEGATIVE_TEMPLATES = ("There is no {name}.", "No {name} is seen.", "No {name}.")
NEGATIVES_MENTIONED = ("Pneumothorax", "Pleural Effusion", "Consolidation")
CHANGE_TEMPLATES: dict[str, tuple[str, str, str]] = {
    "new": ("New {side}{name}.", "{side}{name} is new.", "Interval development of {side}{name}."),
    "increased": ("Increased {side}{name}.", "{side}{name} has increased.", "Worsening {side}{name}."),
    "decreased": ("Decreased {side}{name}.", "{side}{name} has decreased.", "Improving {side}{name}."),
    "unchanged": ("Unchanged {side}{name}.", "{side}{name} is unchanged.", "Stable {side}{name}."),
    "resolved": ("Resolved {side}{name}.", "{side}{name} has resolved.", "Interval resolution of {side}{name}."),
}
COMPARISON_HEADERS = ("Compared to the prior study.", "Since the prior exam.", "Interval comparison.")
ELDERLY_SPINE = (
    "Degenerative changes of the thoracic spine.",
    "Multilevel degenerative changes in the spine.",
    "The thoracic spine shows degenerative change.",
    "Degenerative changes are present in the spine.",
)
YOUNGER_SPINE = ("No osseous abnormality.", "Osseous structures are unremarkable.", "The bones are intact.",
                 "No acute osseous abnormality.")
FEMALE_SOFT_TISSUE = (
    "Breast soft tissue overlies the lung bases.",
    "Overlying breast shadows are noted.",
    "Bilateral breast shadows.",
    "Breast tissue projects over the lower chest.",
)
AORTIC_CALCIFICATION = (
    "Calcification of the aortic knob.",
    "The aorta is tortuous and calcified.",
    "Atherosclerotic calcification of the aorta.",
    "Aortic calcification is present.",
)
HEART_NORMAL = ("The heart size is normal.", "Normal heart size.", "Heart size is normal.",
                "Heart size is within normal limits.")
NORMAL_IMPRESSION = "No acute cardiopulmonary process."
ELDERLY_AGE = 65.0
AORTA_AGE = 75.0  # with the demographic signal on: a statement only age predicts


def era_of(year: int) -> int:
    """The reporting-style era of a calendar year (0: <2013, 1: 2013-2015, 2: later)."""
    return 0 if year < 2013 else 1 if year < 2016 else 2


def _capitalize(s: str) -> str:
    return s[:1].upper() + s[1:]


def _side(finding: str, sides: dict[str, str], lexicon: int) -> str:
    return SIDE_WORDS[lexicon][sides[finding]] + " " if finding in LATERAL_FINDINGS else ""


def write_report(
    severity: dict[str, int],
    change: dict[str, str],
    sides: dict[str, str],
    age: float,
    sex: str,
    lexicon: int,
    year: int,
    structured: bool = False,
    demographic_signal: bool = False,
) -> tuple[str, str]:
    """Return (findings, impression) for one exam.

    `structured` writes the findings in three labelled sections (a site's new template);
    `demographic_signal` adds the age-only aortic statement.
    """
    era = era_of(year)
    comparison: list[str] = []
    if change:
        comparison.append(COMPARISON_HEADERS[era])
    for finding, cls in change.items():
        name = NAMES[finding][lexicon]
        side = _side(finding, sides, lexicon)
        comparison.append(_capitalize(CHANGE_TEMPLATES[cls][era].format(side=side, name=name)))
    chest: list[str] = []
    for finding, s in severity.items():
        if not s:
            continue
        name = NAMES[finding][lexicon]
        if finding in PRESENCE_ONLY:
            chest.append(_capitalize(DEVICE_TEMPLATES[era].format(name=name)))
            continue
        sev = SEVERITY_WORDS[lexicon][s - 1]
        side = _side(finding, sides, lexicon)
        chest.append(_capitalize(POSITIVE_TEMPLATES[era].format(sev=sev, side=side, name=name)))
    if not severity.get("Cardiomegaly"):
        chest.append(HEART_NORMAL[lexicon])
    for finding in NEGATIVES_MENTIONED:
        if not severity.get(finding):
            chest.append(NEGATIVE_TEMPLATES[era].format(name=NAMES[finding][0]))
    other = [(ELDERLY_SPINE if age >= ELDERLY_AGE else YOUNGER_SPINE)[lexicon]]
    if demographic_signal and age >= AORTA_AGE:
        other.append(AORTIC_CALCIFICATION[lexicon])
    if sex == "F":
        other.append(FEMALE_SOFT_TISSUE[lexicon])
    if structured:
        sections = [("Comparison:", comparison), ("Lungs and heart:", chest), ("Other:", other)]
        findings = " ".join(" ".join([head, *body]) for head, body in sections if body)
    else:
        findings = " ".join(comparison + chest + other)

    present = [f for f, s in severity.items() if s and f not in PRESENCE_ONLY]
    if not present:
        impression = NORMAL_IMPRESSION
    else:
        parts = []
        for f in present:
            text = _side(f, sides, lexicon) + NAMES[f][lexicon]
            if f in change:
                text += f", {change[f]}"
            parts.append(text)
        impression = _capitalize("; ".join(parts)) + "."
    return findings, impression


def demographic_statements(text: str) -> tuple[bool, bool, bool]:
    """(says elderly spine, says female soft tissue, says aortic calcification) as read from a report."""
    low = text.lower()
    return "degenerative" in low, "breast" in low, "aort" in low


def demographic_accuracy(generated: list[str], references: list[str]) -> float:
    """Share of reports whose age- and sex-dependent statements match the reference's."""
    if not references:
        return float("nan")
    right = sum(demographic_statements(g) == demographic_statements(r) for g, r in zip(generated, references))
    return right / len(references)
