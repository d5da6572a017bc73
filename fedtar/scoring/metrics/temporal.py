"""Temporal metrics: comparison-to-prior correctness, temporal entity matching, hallucinated priors.

Comparison-to-prior correctness: does the report state the right change?

For each (report, observation) whose reference states a change against the
prior exam (new / increased / decreased / unchanged / resolved), the
generated report is right when it states the same change for that
observation; a missing or different statement is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fedtar.scoring.labeler import extract_changes


def comparison_accuracy(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, int]:
    """(accuracy, number of reference change statements); NaN when there are none."""
    right = total = 0
    for h, r in zip(hyps, refs):
        ref_changes = extract_changes(r)
        if not ref_changes:
            continue
        hyp_changes = extract_changes(h)
        for obs, cls in ref_changes.items():
            total += 1
            right += hyp_changes.get(obs) == cls
    return (right / total if total else float("nan")), total


# The 44 change words of BioViL-T (Bannur et al., CVPR 2023) as Libra's temporal_f1.py and
# RadEval's f1temporal use them; we use their regex form only (no Stanza NER pass, whose hits are
# keywords the regex also finds).
TEMPORAL_KEYWORDS = frozenset((
    "bigger", "change", "cleared", "constant", "decrease", "decreased", "decreasing", "elevated", "elevation",
    "enlarged", "enlargement", "enlarging", "expanded", "greater", "growing", "improved", "improvement",
    "improving", "increase", "increased", "increasing", "larger", "new", "persistence", "persistent",
    "persisting", "progression", "progressive", "reduced", "removal", "resolution", "resolved", "resolving",
    "smaller", "stability", "stable", "stably", "unchanged", "unfolded", "worse", "worsen", "worsened",
    "worsening", "unaltered"))
_TEMPORAL_RE = re.compile(r"\b(" + "|".join(sorted(TEMPORAL_KEYWORDS, key=len, reverse=True)) + r")\b")


def temporal_entities(text: str) -> set[str]:
    """Change words in a report (Libra's cleaning: dashes and underscores become spaces)."""
    clean = re.sub(r"[_-]+", " ", text.replace("\n", " ")).lower()
    return set(_TEMPORAL_RE.findall(clean))


def temporal_entity_f1(hyps: Sequence[str], refs: Sequence[str], eps: float = 1e-10) -> float:
    """TEM: mean per-report F1 of the change-word sets (1 when both are empty, ~0 when only the
    reference is), with Libra's epsilon smoothing."""
    scores = []
    for h, r in zip(hyps, refs):
        hs, rs = temporal_entities(h), temporal_entities(r)
        if not rs:
            scores.append(1.0 if not hs else eps)
            continue
        tp = len(hs & rs)
        p, rec = (tp + eps) / (len(hs) + eps), (tp + eps) / (len(rs) + eps)
        scores.append(2 * p * rec / (p + rec + eps))
    return sum(scores) / len(scores) if scores else float("nan")


# Wording that presupposes an earlier exam. On a first visit there is none, so a generated report
# that says it has hallucinated a prior (MAIRA-2 reports this rate).
_PRIOR_MENTION = re.compile(r"\b(?:compar\w*|prior|previous\w*|interval\w*|since|again|unchanged|no (?:\w+ )?change"
                            r"|stable|persist\w*|resolv\w*|resolution|improv\w*|worse\w*|increas\w*|decreas\w*"
                            r"|new|newly|redemonstrat\w*|remains?)\b", re.I)


def mentions_prior(text: str) -> bool:
    return _PRIOR_MENTION.search(text) is not None


def prior_mention_rate(reports: Sequence[str]) -> float:
    """Share of reports that refer to an earlier exam (NaN for none)."""
    return sum(map(mentions_prior, reports)) / len(reports) if reports else float("nan")
