"""Clinical efficacy: precision, recall and F1 over the 14 CheXpert observations.

Labels of generated and reference reports both come from the rule-based
labeler (fedtar.labeler). As in the report-generation literature, a label
counts as positive only when it is 1; uncertain (-1), negative and
unmentioned count as negative. Micro scores pool all (report, observation)
pairs; macro scores average the per-observation scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedtar.findings import CHEXPERT_OBSERVATIONS
from fedtar.labeler import label_report


def positive_matrix(reports: Sequence[str]) -> np.ndarray:
    """(N, 14) 0/1 matrix of positive observations."""
    out = np.zeros((len(reports), len(CHEXPERT_OBSERVATIONS)), dtype=np.int8)
    for i, text in enumerate(reports):
        labels = label_report(text)
        for j, obs in enumerate(CHEXPERT_OBSERVATIONS):
            out[i, j] = labels.get(obs) == 1
    return out


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.divide(tp, tp + fp, out=np.zeros_like(tp, dtype=float), where=(tp + fp) > 0)
    r = np.divide(tp, tp + fn, out=np.zeros_like(tp, dtype=float), where=(tp + fn) > 0)
    f = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return p, r, f


def clinical_efficacy(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    h, r = positive_matrix(hyps), positive_matrix(refs)
    tp = (h & r).sum(0).astype(float)
    fp = (h & (1 - r)).sum(0).astype(float)
    fn = ((1 - h) & r).sum(0).astype(float)
    mp, mr, mf = _prf(np.array(tp.sum()), np.array(fp.sum()), np.array(fn.sum()))
    p, rec, f = _prf(tp, fp, fn)
    present = (tp + fn) > 0  # macro over observations that occur in the references
    macro = lambda x: float(x[present].mean()) if present.any() else 0.0  # noqa: E731
    return {"ce_precision": float(mp), "ce_recall": float(mr), "ce_f1": float(mf),
            "ce_precision_macro": macro(p), "ce_recall_macro": macro(rec), "ce_f1_macro": macro(f)}
