"""A hostile site for robustness tests and experiments: it trains honestly, then poisons
what it uploads (issue 15: plausible states, not broken ones).

- `flip`: every state w becomes w_g - scale (w - w_g) (the update sign-flipped, scaled);
- `boost`: w_g + scale (w - w_g) (the update scaled; with scale below
  `federation.norm_bound` the median-norm guard lets it through).

Every model record is poisoned (each visit for FedTAR, `arrays` for the baselines);
metrics and control records (`val-grad`, `scaffold-dc`) are left as trained.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import ArrayRecord, Context, Message, RecordDict

from clients.client_app import app as client_app
from fedtar.parameters import encode_state, state_from_record

POISON_KINDS = ("flip", "boost")
CONTROL_RECORDS = ("val-grad", "scaffold-dc")


def poisoning_app(kind: str, scale: float) -> Callable[[Message, Context], Message]:
    """A node app (for InProcessGrid) answering train messages with poisoned states."""
    if kind not in POISON_KINDS:
        raise ValueError(f"poison kind must be one of {', '.join(POISON_KINDS)}, got {kind!r}")
    sign = -1.0 if kind == "flip" else 1.0

    def app(msg: Message, context: Context) -> Message:
        reply = client_app(msg, context)
        if msg.metadata.message_type != "train" or reply.has_error():
            return reply
        start = state_from_record(msg.content["global"])
        transport = str(msg.content["config"].get("federation.transport_dtype", "float32"))
        content = RecordDict()
        for name, record in reply.content.array_records.items():
            if name in CONTROL_RECORDS:
                content[name] = record
                continue
            state = state_from_record(record, transport)
            poisoned = {k: start[k] + sign * scale * (v - start[k]) for k, v in state.items()}
            content[name] = ArrayRecord(encode_state(poisoned, transport))
        for name, record in reply.content.metric_records.items():
            content[name] = record
        return Message(content=content, reply_to=msg)

    return app
