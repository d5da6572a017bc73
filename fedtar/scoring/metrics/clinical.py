"""Clinical efficacy: precision, recall and F1 of observation labels, under named protocols.

Labels of generated and reference reports come from a labeler (by default
the rule-based fedtar.scoring.labeler; optionally CheXbert, fedtar.scoring.metrics.chexbert).
Published tables disagree on the protocol, so every one is computed and
named (`PROTOCOLS`):
- averaging: micro (pool all report-observation pairs), macro (mean of the
  per-observation scores over observations present in the references) or
  example-based (per report, then the mean; a report with no positive in
  either counts 0, as PromptMRG's and MLRG's code do);
- observations: all 14 CheXpert observations, or the 5 CheXbert ones
  (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion);
- uncertain labels (-1) counted as negative (default) or as positive.
`ce_precision` / `ce_recall` / `ce_f1` keep their meaning: micro, 14,
uncertain as negative; `ce_*_macro` likewise for macro.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from data_adapters.findings import CHEXPERT_OBSERVATIONS
from fedtar.scoring.labeler import label_report

FIVE_OBSERVATIONS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
_FIVE_IDX = [CHEXPERT_OBSERVATIONS.index(o) for o in FIVE_OBSERVATIONS]

# A labeler maps reports to an (N, 14) matrix of 1 / 0 / -1 in CHEXPERT_OBSERVATIONS order.
Labeler = Callable[[Sequence[str]], np.ndarray]


def _key(stat: str, average: str, five: bool, uncertain_positive: bool) -> str:
    if (average, five, uncertain_positive) == ("micro", False, False):
        return f"ce_{stat}"
    return f"ce_{stat}_{average}" + ("_5" if five else "") + ("_upos" if uncertain_positive else "")


def _describe(average: str, five: bool, uncertain_positive: bool) -> str:
    return (f"{average}{'-averaged' if average != 'example' else '-based (per report)'}, "
            f"{'5 CheXbert' if five else '14 CheXpert'} observations, "
            f"uncertain as {'positive' if uncertain_positive else 'negative'}")


PROTOCOLS: dict[str, str] = {
    _key(stat, avg, five, upos): _describe(avg, five, upos)
    for stat in ("precision", "recall", "f1") for avg in ("micro", "macro", "example")
    for five in (False, True) for upos in (False, True)
}


def rule_labels(reports: Sequence[str]) -> np.ndarray:
    """(N, 14) labels from the rule-based labeler; an unmentioned observation is 0."""
    out = np.zeros((len(reports), len(CHEXPERT_OBSERVATIONS)), dtype=np.int8)
    for i, text in enumerate(reports):
        labels = label_report(text)
        for j, obs in enumerate(CHEXPERT_OBSERVATIONS):
            out[i, j] = labels.get(obs, 0)
    return out


def positive_matrix(reports: Sequence[str]) -> np.ndarray:
    """(N, 14) 0/1 matrix of positive observations (uncertain as negative)."""
    return (rule_labels(reports) == 1).astype(np.int8)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def _scores(h: np.ndarray, r: np.ndarray) -> dict[str, dict[str, float]]:
    tp, fp, fn = (h & r).astype(float), (h & ~r).astype(float), (~h & r).astype(float)
    out = {}
    for average, axis in (("micro", None), ("macro", 0), ("example", 1)):
        t, p_, n = (tp.sum(axis), fp.sum(axis), fn.sum(axis)) if axis is not None else \
            (np.array(tp.sum()), np.array(fp.sum()), np.array(fn.sum()))
        p, rec, f = _ratio(t, t + p_), _ratio(t, t + n), _ratio(2 * t, 2 * t + p_ + n)
        if average == "macro":
            present = r.sum(0) > 0  # observations that occur in the references
            mean = lambda x: float(x[present].mean()) if present.any() else 0.0  # noqa: E731
        else:
            mean = lambda x: float(np.mean(x)) if x.size else 0.0  # noqa: E731
        out[average] = {"precision": mean(p), "recall": mean(rec), "f1": mean(f)}
    return out


def clinical_efficacy(hyps: Sequence[str], refs: Sequence[str], labeler: Labeler = rule_labels) -> dict[str, float]:
    """Every protocol's precision/recall/F1 (keys in `PROTOCOLS`)."""
    hl, rl = labeler(hyps), labeler(refs)
    out: dict[str, float] = {}
    for upos in (False, True):
        h, r = (hl != 0, rl != 0) if upos else (hl == 1, rl == 1)
        for five in (False, True):
            cols = _FIVE_IDX if five else slice(None)
            for average, stats in _scores(h[:, cols], r[:, cols]).items():
                for stat, value in stats.items():
                    out[_key(stat, average, five, upos)] = value
    return out
