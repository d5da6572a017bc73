"""A rule-based CheXpert-style labeler and comparison-to-prior extractor.

Reports are split into sentences; every mention of an observation is
labelled positive (1), negative (0) or uncertain (-1) by cue words in its
sentence, NegEx style: a negation or uncertainty cue before the mention (up
to a scope break such as "but") or a post-cue after it ("... is absent").
Per report, CheXpert's aggregation: any positive mention gives 1, else any
uncertain gives -1, else 0; an observation never mentioned is left out.
"No Finding" is derived: 1 when no pathology is positive or uncertain
(support devices do not count), else 0.

The same mention finder drives `extract_changes`, which reads statements
of change against the prior exam (new / increased / decreased / unchanged /
resolved) per observation.
"""

from __future__ import annotations

import re

from fedtar.findings import CHEXPERT_OBSERVATIONS

_OBS_PATTERNS: dict[str, str] = {
    "Enlarged Cardiomediastinum": r"enlarged cardiomediastin\w*|widen\w* (?:of the )?mediastin\w*|mediastinal widening"
                                  r"|cardiomediastinal silhouette is enlarged",
    "Cardiomegaly": r"cardiomegaly|enlarged cardiac silhouette|cardiac enlargement|enlarged heart"
                    r"|heart (?:size )?is enlarged|heart size|cardiac silhouette",
    "Lung Opacity": r"opacit\w*|infiltrat\w*|haziness|airspace disease",
    "Lung Lesion": r"nodul\w*|\bmass(?:es)?\b|lung lesion|nodular lesion",
    "Edema": r"edema|vascular congestion|pulmonary congestion",
    "Consolidation": r"consolidat\w*",
    "Pneumonia": r"pneumonia|infectio\w*",
    "Atelectasis": r"atelecta\w*|collapse",
    "Pneumothorax": r"pneumothora\w*",
    "Pleural Effusion": r"(?:pleural )?effusions?|pleural fluid",
    "Pleural Other": r"pleural thickening|pleural scarring|pleural plaque\w*",
    "Fracture": r"fractur\w*",
    "Support Devices": r"catheter|\btubes?\b|\blines?\b|pacemaker|\bstents?\b|\bwires?\b|\bdevices?\b"
                       r"|\bpicc\b|\bport\b",
}
_MENTIONS = {obs: re.compile(p, re.I) for obs, p in _OBS_PATTERNS.items()}

# Phrases that state an observation is normal although they name it.
_NORMAL_PHRASES = {
    "Cardiomegaly": re.compile(r"heart size (?:is )?(?:within )?normal|normal heart size|heart size is normal"
                               r"|cardiac silhouette is normal|normal cardiac silhouette"
                               r"|heart size (?:is )?(?:stable|unremarkable)", re.I),
}
# "heart size"/"cardiac silhouette" alone are not a positive mention of cardiomegaly.
_WEAK_MENTIONS = {"Cardiomegaly": re.compile(r"^(?:heart size|cardiac silhouette)$", re.I)}

_NEGATION = re.compile(r"\bno\b|\bnot\b|\bwithout\b|negative for|free of|clear of|\bresolved\b|resolution of"
                       r"|no longer|\bnor\b|rule[sd]? out", re.I)
_POST_NEGATION = re.compile(r"^[^.]*?\b(?:is|are|has|have)\s+(?:\w+\s+)?(?:absent|resolved|not seen|gone)\b", re.I)
_UNCERTAIN = re.compile(r"\bmay\b|\bmight\b|possib\w*|cannot be (?:excluded|ruled out)|\bcould\b|questionabl\w*"
                        r"|suspect\w*|\blikely\b|suggest\w*|concern(?:ing)? for|\bversus\b|\bvs\b|probabl\w*"
                        r"|\bequivocal\b", re.I)
_SCOPE_BREAK = re.compile(r"\bbut\b|\bhowever\b|\balthough\b|\bwhich\b|\bwith\b", re.I)
_SENTENCE = re.compile(r"[^.;\n]+")

_CHANGE_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("resolved", re.compile(r"\bresolved\b|\bresolution\b|no longer (?:seen|present|visible)", re.I)),
    ("new", re.compile(r"\bnew\b|\bnewly\b|interval development|interval appearance", re.I)),
    ("increased", re.compile(r"\bincreas\w*|\bworsen\w*|\benlarging\b|\bprogress\w*|\blarger\b", re.I)),
    ("decreased", re.compile(r"\bdecreas\w*|\bimprov\w*|\bsmaller\b|\bdiminish\w*|\breduc\w*", re.I)),
    ("unchanged", re.compile(r"\bunchanged\b|\bstable\b|no (?:significant |interval )?change|\bsimilar\b"
                             r"|\bpersistent\b|\bpersists\b", re.I)),
)

PATHOLOGIES = tuple(o for o in CHEXPERT_OBSERVATIONS if o not in ("No Finding", "Support Devices"))


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _mention_label(sentence: str, start: int, end: int) -> int:
    before = sentence[:start]
    breaks = list(_SCOPE_BREAK.finditer(before))
    if breaks:
        before = before[breaks[-1].end():]
    if _NEGATION.search(before) or _POST_NEGATION.match(sentence[start:]):
        return 0
    if _UNCERTAIN.search(sentence):
        return -1
    return 1


def _mentions(sentence: str) -> dict[str, int]:
    """Observation -> label for one sentence (aggregated CheXpert-style within it)."""
    out: dict[str, int] = {}
    for obs, pattern in _MENTIONS.items():
        normal = _NORMAL_PHRASES.get(obs)
        if normal is not None and normal.search(sentence):
            out[obs] = _aggregate(out.get(obs), 0)
            continue
        for m in pattern.finditer(sentence):
            weak = _WEAK_MENTIONS.get(obs)
            if weak is not None and weak.match(m.group(0)):
                continue
            out[obs] = _aggregate(out.get(obs), _mention_label(sentence, m.start(), m.end()))
    return out


def _aggregate(current: int | None, new: int) -> int:
    if current is None:
        return new
    if 1 in (current, new):
        return 1
    if -1 in (current, new):
        return -1
    return 0


def label_report(text: str) -> dict[str, int]:
    """Observation -> 1 / 0 / -1 for the observations the report mentions, plus No Finding."""
    labels: dict[str, int] = {}
    for s in sentences(text):
        for obs, lab in _mentions(s).items():
            labels[obs] = _aggregate(labels.get(obs), lab)
    labels["No Finding"] = 0 if any(labels.get(o) in (1, -1) for o in PATHOLOGIES) else 1
    return labels


def extract_changes(text: str) -> dict[str, str]:
    """Observation -> change class, from sentences that state change against the prior."""
    changes: dict[str, str] = {}
    for s in sentences(text):
        cls = next((name for name, cue in _CHANGE_CUES if cue.search(s)), None)
        if cls is None:
            continue
        for obs, pattern in _MENTIONS.items():
            if pattern.search(s) and not (obs in _WEAK_MENTIONS and all(
                    _WEAK_MENTIONS[obs].match(m.group(0)) for m in pattern.finditer(s))):
                changes.setdefault(obs, cls)
    return changes
