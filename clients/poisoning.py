"""A hostile site for robustness tests and experiments: it trains honestly, then poisons
what it uploads (issue 15: plausible states, not broken ones).

- `flip`: every state w becomes w_g - scale (w - w_g) (the update sign-flipped, scaled);
- `boost`: w_g + scale (w - w_g) (the update scaled; with scale below
  `federation.norm_bound` the median-norm guard lets it through).

Every model record is poisoned (each visit for FedTAR, `arrays` for the baselines), or only
`visit-{visit}` when `visit` is given (a visit-targeted attack on FedTAR's per-visit records);
metrics and control records (`val-grad`, `scaffold-dc`) are left as trained.

`shuffled_reports` is the data-side attack: a copy of a site's manifest whose training reports
belong to other exams (label-flipped reports), for a site that then trains "honestly" on them.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, RecordDict

from clients.client_app import app as client_app
from fedtar.generator.parameters import encode_state, state_from_record

POISON_KINDS = ("flip", "boost")
CONTROL_RECORDS = ("val-grad", "scaffold-dc")


REPORT_COLUMNS = ("findings", "impression", "labels", "changes")


def poisoning_app(kind: str, scale: float, visit: int | None = None,
                  train_manifest: str | Path | None = None) -> Callable[[Message, Context], Message]:
    """A node app (for InProcessGrid) answering train messages with poisoned states. With
    `train_manifest` (e.g. `shuffled_reports`' copy) it trains on that manifest and is scored on its
    own: a test exam's prior report comes from the training rows, so scoring on the copy would
    score the site on shuffled priors."""
    if kind not in POISON_KINDS:
        raise ValueError(f"poison kind must be one of {', '.join(POISON_KINDS)}, got {kind!r}")
    target = None if visit is None else f"visit-{visit}"
    sign = -1.0 if kind == "flip" else 1.0

    def app(msg: Message, context: Context) -> Message:
        training = msg.metadata.message_type == "train"
        if training and train_manifest is not None:
            context = Context(run_id=context.run_id, node_id=context.node_id, state=context.state,
                              node_config={**dict(context.node_config), "manifest": str(train_manifest)},
                              run_config=context.run_config)
        reply = client_app(msg, context)
        if not training or reply.has_error():
            return reply
        start = state_from_record(msg.content["global"])
        transport = str(msg.content["config"].get("federation.transport_dtype", "float32"))
        content = RecordDict()
        for name, record in reply.content.array_records.items():
            if name in CONTROL_RECORDS or (target is not None and name != target):
                content[name] = record
                continue
            state = state_from_record(record, transport)
            poisoned = {k: start[k] + sign * scale * (v - start[k]) for k, v in state.items()}
            content[name] = ArrayRecord(encode_state(poisoned, transport))
        for name, record in reply.content.metric_records.items():
            content[name] = record
        return Message(content=content, reply_to=msg)

    return app


def shuffled_reports(manifest: str | Path, seed: int = 0, split: str = "train") -> Path:
    """A copy of `manifest` (beside it, so image paths still resolve) whose `split` rows carry another
    row's report and labels; the other splits are untouched, so the site is scored on true reports."""
    manifest = Path(manifest)
    with manifest.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields, rows = list(reader.fieldnames or []), list(reader)
    missing = [c for c in REPORT_COLUMNS if c not in fields]
    if missing:
        raise ValueError(f"{manifest}: no {', '.join(missing)} column(s) to shuffle")
    picked = [i for i, r in enumerate(rows) if r.get("split") == split]
    if len(picked) < 2:
        raise ValueError(f"{manifest}: fewer than two {split} rows, nothing to shuffle")
    # A derangement (every row gets another row's report): rotate a random order by one.
    order = picked[:]
    random.Random(seed).shuffle(order)
    donors = dict(zip(order, order[1:] + order[:1]))
    shuffled = [dict(r) for r in rows]
    for i, j in donors.items():
        for c in REPORT_COLUMNS:
            shuffled[i][c] = rows[j][c]
    out = manifest.with_name(f"{manifest.stem}.shuffled{manifest.suffix}")
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(shuffled)
    return out
