"""A Flower Grid that runs ClientApps in this process, one after another.

For tests and quick debugging: same messages, same ClientApp, same
strategies and server loop as the real engines, no Ray and no SuperLink.
Nodes can be given any callable as their app (a faulty site in a test).
A node whose app raises answers with an error reply, as Flower does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

NodeApp = Callable[[Message, Context], Message]


class InProcessGrid(Grid):
    def __init__(self, apps: list[NodeApp], node_configs: list[dict], record: bool = False):
        # Messages stamp the run and sender from the process's task identity (the engines set it).
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self._nodes = {}
        for i, (app, node_config) in enumerate(zip(apps, node_configs)):
            node_id = 1000 + i
            self._nodes[node_id] = (app, Context(run_id=1, node_id=node_id, node_config=node_config,
                                                 state=RecordDict(), run_config={}))
        self.record = record               # keep every message (tests inspect them; costs memory)
        self.sent: list[Message] = []
        self.replies: list[Message] = []

    def set_run(self, run_id: int) -> None:  # pragma: no cover - no run bookkeeping in process
        pass

    @property
    def run(self):  # pragma: no cover
        raise NotImplementedError

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # pragma: no cover
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # pragma: no cover
        raise NotImplementedError("use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # pragma: no cover
        raise NotImplementedError("use send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        out = []
        for msg in messages:
            if self.record:
                self.sent.append(msg)
            app, context = self._nodes[msg.metadata.dst_node_id]
            try:
                reply = app(msg, context)
            except Exception as e:  # noqa: BLE001 - a failing site must not stop the server
                reply = Message(Error(code=0, reason=f"{type(e).__name__}: {e}"), reply_to=msg)
            if reply is not None:
                if self.record:
                    self.replies.append(reply)
                out.append(reply)
        return out
