"""Step 3: the durable outbox and its delivery to the relay.

What the rest of resetd uses is exported here: the types of the outbox that
mail is queued in (in the transaction of the event that caused it, see
:mod:`resetd.storage.outbox`), the :class:`OutboxWorker` that delivers it,
and the relay's last known state.

Inside, in the order a mail meets them: the storage holds the ``outbox``
table; the :mod:`~resetd.outbox.worker` claims due mail and hands
it, through the :mod:`~resetd.outbox.handoff`, to pooled connections
(:mod:`~resetd.outbox.relay`) whose :mod:`~resetd.outbox.smtp` sessions send
its :mod:`~resetd.outbox.envelope` and data. The :mod:`~resetd.outbox.gate`
paces new connections to a relay that refuses them and keeps its status;
what an answer means is in
:mod:`~resetd.outbox.failures`, what it becomes in
:mod:`~resetd.outbox.attempts`, and the :mod:`~resetd.outbox.recorder` marks
accepted mail sent.

Events for the app's webhook (``[webhooks] url``) are rows of the same table:
:mod:`~resetd.outbox.webhook_events` makes them where what they report
happens, the :mod:`~resetd.outbox.webhook_worker` claims them as the worker
claims mail, and :mod:`~resetd.outbox.webhook` signs and POSTs each attempt.
"""

from ..storage.outbox import (
    NewEvent,
    NewMail,
    OutboxEntry,
    OutboxStore,
    OutgoingMail,
    RelayStatus,
    RelayStatusStore,
)
from .webhook import WebhookSender, client_session
from .webhook_events import PASSWORD_CHANGED, RESET_REQUESTED, WebhookEvents
from .webhook_worker import WebhookWorker
from .worker import OutboxWorker

__all__ = [
    "PASSWORD_CHANGED",
    "RESET_REQUESTED",
    "NewEvent",
    "NewMail",
    "OutboxEntry",
    "OutboxStore",
    "OutboxWorker",
    "OutgoingMail",
    "RelayStatus",
    "RelayStatusStore",
    "WebhookEvents",
    "WebhookSender",
    "WebhookWorker",
    "client_session",
]
