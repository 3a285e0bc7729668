"""The events resetd tells the app about, made ready for the outbox.

An event is made where what it reports happens, and queued in that same
transaction (:meth:`~resetd.storage.outbox.OutboxInTransaction.enqueue_event`): the
password change for ``password.changed``, the processing of a request that
queued a reset mail for ``reset.requested``. Its body is JSON, fixed once made
(its ``id`` included, so that the app can drop a repeat of an event it already
handled); only the signature is made anew for each attempt
(:mod:`resetd.outbox.webhook`)::

    {"type": "password.changed", "user_id": 42, "email": "susan@example.com",
     "at": "2026-12-02T16:45:13Z", "id": "evt_…"}
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ..config import WebhooksConfig
from ..storage.outbox import NewEvent

PASSWORD_CHANGED = "password.changed"  # noqa: S105 (an event type)
RESET_REQUESTED = "reset.requested"


def destination(url: str) -> str:
    """``url`` as listings and logs show it: without its query, which may hold
    something only the app should see."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class WebhookEvents:
    """Makes the events ``[webhooks] events`` asks for; :meth:`wants` says which."""

    def __init__(self, cfg: WebhooksConfig) -> None:
        self.cfg = cfg
        self._destination = destination(cfg.url)

    def wants(self, kind: str) -> bool:
        return self.cfg.enabled and kind in self.cfg.events

    def make(self, kind: str, user_id: int | str, email: str, at: float) -> NewEvent:
        """The event ``kind`` about account ``user_id`` (whose address is
        ``email``), as happened at ``at`` (wall-clock seconds)."""
        event_id = "evt_" + secrets.token_urlsafe(18)
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"type": kind, "user_id": user_id, "email": email, "at": when, "id": event_id}
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return NewEvent(kind, event_id, data, self._destination, user_id)
