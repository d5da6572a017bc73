"""Report-generation metrics: language (nlg), clinical efficacy, temporal; overall and per visit."""

from __future__ import annotations

from collections.abc import Sequence

from .clinical import clinical_efficacy
from .nlg import bleu, cider_d, meteor, metric_tokens, rouge_l
from .ptb import coco_tokenize
from .temporal import comparison_accuracy

METRIC_COLUMNS = ("bleu1", "bleu4", "meteor", "rouge_l", "cider", "ce_f1", "cmp_acc")


def evaluate_reports(hyps: Sequence[str], refs: Sequence[str], with_meteor: bool = True) -> dict[str, float]:
    """All metrics for paired generated/reference reports (raw text in, scores out)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} generated reports for {len(refs)} references")
    if not hyps:
        return {}
    h = [x or "empty" for x in coco_tokenize(hyps)]
    r = [x or "empty" for x in coco_tokenize(refs)]
    b = bleu(h, r)
    out = {f"bleu{k + 1}": b[k] for k in range(4)}
    out["rouge_l"] = rouge_l(h, r)
    out["cider"] = cider_d(h, r)
    if with_meteor:
        out["meteor"], note = meteor(h, r)
        if note:
            out["meteor_note"] = note  # type: ignore[assignment]
    else:
        out["meteor"] = float("nan")
    out.update(clinical_efficacy(hyps, refs))
    out["cmp_acc"], out["cmp_n"] = comparison_accuracy(hyps, refs)
    return out


def evaluate_by_visit(hyps: Sequence[str], refs: Sequence[str], visits: Sequence[int],
                      with_meteor: bool = False) -> dict[int, dict[str, float]]:
    """The same metrics on each visit index's reports."""
    out = {}
    for t in sorted(set(visits)):
        idx = [i for i, v in enumerate(visits) if v == t]
        out[t] = evaluate_reports([hyps[i] for i in idx], [refs[i] for i in idx], with_meteor)
        out[t]["n"] = len(idx)
    return out


__all__ = ["METRIC_COLUMNS", "bleu", "cider_d", "clinical_efficacy", "coco_tokenize", "comparison_accuracy", "evaluate_by_visit",
           "evaluate_reports", "meteor", "metric_tokens", "rouge_l"]
