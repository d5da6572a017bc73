"""Agreement of the rule-based CheXpert labeler with our hand labels of odd-numbered IU X-ray reports.

    python experiments/labeler_agreement.py [--archive PATH] [--cache-dir DIR] [--errors] [--labeler rules]

Reads the labels (tests/data/iu_dev_labels.csv; or the part files given with
--labels), the report text straight from the torchxrayvision wheel or its
NLMCXR_reports.tgz (--archive, $FEDTAR_IU_REPORTS, or `pip download` into
--cache-dir), and prints per-observation precision / recall / F1 (positive vs
not: uncertain counted as negative, the maintainers' protocol), micro- and
macro-F1, and exact-label agreement (1 / 0 / -1 / not mentioned).

This is the development set (odd-numbered reports, rules tuned on it), not
the maintainers' held-out even-numbered reports, which nothing here reads.

--labeler context scores medspaCy's ConText instead of our negation and
uncertainty rules (same mention finder; needs `pip install medspacy`).
--merge-into PATH writes the --labels files merged (sorted by id) and exits.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedtar.scoring.labeler import label_report  # noqa: E402
from fedtar.scoring.metrics.iu_reports import DEV_LABELS, agreement, load_labels, locate_archive, odd_reports  # noqa: E402


def merge(parts: list[Path], out: Path) -> int:
    header, rows = None, {}
    for p in parts:
        with open(p, newline="") as f:
            r = list(csv.reader(f))
        if header is None:
            header = r[0]
        elif r[0] != header:
            raise SystemExit(f"{p}: header differs from {parts[0]}")
        for row in r[1:]:
            if row and row[0].strip():
                rid = int(row[0])
                if rid % 2 == 0:
                    raise SystemExit(f"{p}: even report id {rid}")
                if rid in rows and rows[rid] != row:
                    raise SystemExit(f"report {rid} labelled differently in two files")
                rows[rid] = row
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows[k] for k in sorted(rows))
    return len(rows)


def context_labeler():
    """label_report with medspaCy's ConText (default rules, blank English pipeline, no model download)
    deciding negation and uncertainty of each mention in place of our cue rules; the mention finder,
    the structure-only and other-exam rules and the aggregation stay ours, so only the scope logic differs.
    Negated -> 0; uncertain or hypothetical -> -1 (uncertain wins over negated, as CheXpert's
    pre-negation uncertainty: "cannot be excluded")."""
    import medspacy.context  # noqa: F401  (registers the "medspacy_context" factory)
    import spacy
    from spacy.tokens import Span

    import fedtar.scoring.labeler as lab

    nlp = spacy.blank("en")
    context = nlp.add_pipe("medspacy_context")

    def classify(sentence: str, start: int, end: int, use_or: bool = True, across_with: bool = True) -> int:
        doc = nlp.make_doc(sentence)
        for i, tok in enumerate(doc):
            tok.is_sent_start = i == 0
        span = doc.char_span(start, end, label="FINDING", alignment_mode="expand")
        if span is None:
            return 1
        doc.ents = [Span(doc, span.start, span.end, label="FINDING")]
        ent = context(doc).ents[0]
        if ent._.is_uncertain or ent._.is_hypothetical:
            return -1
        return 0 if ent._.is_negated else 1

    lab._classify = classify
    lab._sentence_labels.cache_clear()
    return lab.label_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", nargs="+", type=Path)
    ap.add_argument("--archive", help="torchxrayvision wheel or NLMCXR_reports.tgz")
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fedtar" / "iu"),
                    help="where to pip-download the torchxrayvision wheel if no archive is given")
    ap.add_argument("--labeler", choices=("rules", "context"), default="rules")
    ap.add_argument("--errors", action="store_true", help="list each disagreement (report id, observation)")
    ap.add_argument("--merge-into", type=Path)
    args = ap.parse_args(argv)

    if args.merge_into:
        n = merge(args.labels or sorted(DEV_LABELS.parent.glob("iu_dev_labels_part_*.csv")), args.merge_into)
        print(f"{n} reports -> {args.merge_into}")
        return 0
    paths = args.labels or [DEV_LABELS]
    gold: dict[int, dict[str, int]] = {}
    observations: tuple[str, ...] = ()
    for p in paths:
        observations, g = load_labels(p)
        gold.update(g)
    texts = odd_reports(locate_archive(args.archive, args.cache_dir), gold)
    missing = sorted(set(gold) - set(texts))
    if missing:
        print(f"labelled but not in the archive: {missing}", file=sys.stderr)
    gold = {k: v for k, v in gold.items() if k in texts}
    if args.labeler == "context":
        label = context_labeler()
    else:
        label = label_report
    pred = {rid: label(texts[rid]) for rid in gold}
    res = agreement(pred, gold, observations)

    print(f"{res['n']} odd-numbered IU reports (development set), labeler: {args.labeler}; "
          "positive vs not (uncertain as negative)")
    print(f"{'observation':28s} {'n+':>4s} {'P':>6s} {'R':>6s} {'F1':>6s} {'exact':>6s}")
    for o, v in res["per_observation"].items():
        f1 = f"{v['f1']:.3f}" if v["support"] else "   n/a"
        print(f"{o:28s} {v['support']:4d} {v['precision']:6.3f} {v['recall']:6.3f} {f1:>6s} {v['exact']:6.3f}")
    print(f"micro-F1 {res['micro_f1']:.3f}  macro-F1 {res['macro_f1']:.3f}  exact-label agreement {res['exact']:.3f}")
    # The hand labels set No Finding to 1 when none of the 12 pathologies is positive or uncertain;
    # our labeler follows CheXpert's labeler, where its other findings (granuloma, emphysema,
    # degenerative changes, ...) also rule No Finding out. The same labels under the hand labels' rule:
    thirteen = {o for o in observations if o not in ("No Finding", "Support Devices")}
    derived = {rid: {**p, "No Finding": int(not any(p.get(o) in (1, -1) for o in thirteen))} for rid, p in pred.items()}
    nf = agreement(derived, gold, ["No Finding"])["per_observation"]["No Finding"]
    print(f"No Finding by the hand labels' rule (none of the 12 pathologies positive or uncertain): "
          f"P {nf['precision']:.3f} R {nf['recall']:.3f} F1 {nf['f1']:.3f}")
    if args.errors:
        for rid in sorted(gold):
            for o in observations:
                g, p = gold[rid].get(o), pred[rid].get(o)
                if o == "No Finding" and p == 0:
                    p = None
                if g != p:
                    print(f"{rid}\t{o}\tgold={g}\tours={p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
