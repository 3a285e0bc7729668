"""Step 3: the durable outbox and its delivery to the relay.

What the rest of resetd uses is exported here: the :class:`OutboxStore` that
mail is queued in (in the transaction of the event that caused it), the
:class:`OutboxWorker` that delivers it, and the relay's last known state.

Inside, in the order a mail meets them: :mod:`~resetd.outbox.store` holds the
``outbox`` table; the :mod:`~resetd.outbox.worker` claims due mail and hands
it, through the :mod:`~resetd.outbox.handoff`, to pooled connections
(:mod:`~resetd.outbox.relay`) whose :mod:`~resetd.outbox.smtp` sessions send
its :mod:`~resetd.outbox.envelope` and data. The :mod:`~resetd.outbox.gate`
paces new connections to a relay that refuses them and keeps its
:mod:`~resetd.outbox.status`; what an answer means is in
:mod:`~resetd.outbox.failures`, what it becomes in
:mod:`~resetd.outbox.attempts`, and the :mod:`~resetd.outbox.recorder` marks
accepted mail sent.
"""

from .status import RelayStatus, RelayStatusStore
from .store import NewMail, OutboxEntry, OutboxStore, OutgoingMail
from .worker import OutboxWorker

__all__ = [
    "NewMail",
    "OutboxEntry",
    "OutboxStore",
    "OutboxWorker",
    "OutgoingMail",
    "RelayStatus",
    "RelayStatusStore",
]
