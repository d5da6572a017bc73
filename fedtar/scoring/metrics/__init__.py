"""Report-generation metrics: language (nlg), clinical efficacy, temporal; overall and per visit."""

from __future__ import annotations

from collections.abc import Sequence

from .clinical import PROTOCOLS, Labeler, clinical_efficacy, rule_labels
from .nlg import bleu, cider_d, meteor, metric_tokens, rouge_l
from .ptb import coco_tokenize
from .temporal import comparison_accuracy, prior_mention_rate, temporal_entity_f1

METRIC_COLUMNS = ("bleu1", "bleu4", "meteor", "rouge_l", "cider", "ce_f1", "cmp_acc")


def evaluate_reports(hyps: Sequence[str], refs: Sequence[str], with_meteor: bool = True,
                     labeler: Labeler = rule_labels) -> dict[str, float]:
    """All metrics for paired generated/reference reports (raw text in, scores out).

    Clinical efficacy under every protocol in `PROTOCOLS` (labels from `labeler`); `tem`: temporal
    entity matching F1."""
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
    out.update(clinical_efficacy(hyps, refs, labeler))
    out["cmp_acc"], out["cmp_n"] = comparison_accuracy(hyps, refs)
    out["tem"] = temporal_entity_f1(hyps, refs)
    return out


def evaluate_by_visit(hyps: Sequence[str], refs: Sequence[str], visits: Sequence[int],
                      with_meteor: bool = False, labeler: Labeler = rule_labels) -> dict[int, dict[str, float]]:
    """The same metrics on each visit index's reports; on first visits (index 1, no prior exam)
    also `prior_halluc`, the share of generated reports that refer to a prior."""
    out = {}
    for t in sorted(set(visits)):
        idx = [i for i, v in enumerate(visits) if v == t]
        out[t] = evaluate_reports([hyps[i] for i in idx], [refs[i] for i in idx], with_meteor, labeler)
        out[t]["n"] = len(idx)
        if t == 1:
            out[t]["prior_halluc"] = prior_mention_rate([hyps[i] for i in idx])
    return out


__all__ = ["METRIC_COLUMNS", "PROTOCOLS", "bleu", "cider_d", "clinical_efficacy", "coco_tokenize", "comparison_accuracy", "evaluate_by_visit",
           "evaluate_reports", "meteor", "metric_tokens", "prior_mention_rate", "rouge_l", "rule_labels",
           "temporal_entity_f1"]
