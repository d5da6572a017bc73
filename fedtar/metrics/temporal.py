"""Comparison-to-prior correctness: does the report state the right change?

For each (report, observation) whose reference states a change against the
prior exam (new / increased / decreased / unchanged / resolved), the
generated report is right when it states the same change for that
observation; a missing or different statement is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedtar.labeler import extract_changes


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
