"""The outbox's storage: mail and webhook events waiting, claimed, sent or failed.

A claim names its owner (an instance id) and lasts a lease; every change to
a claimed row is made only where the claim is still the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..reset.compose import ComposedMail
from .errors import StorageErrors
from .wakeups import Watch


@dataclass(frozen=True)
class OutgoingMail:
    id: int
    kind: str
    sender: str
    recipient: str
    message: bytes
    attempts: int  # including the attempt this claim is for
    created_at: float
    expires_at: float | None = None  # the link inside is dead from then on
    user_id: str | None = None  # the account it is for, when there is one
    channel: str = "mail"  # or "webhook": ``message`` is an event for [webhooks] url

    @property
    def audit_outcome(self) -> str:
        """How the audit trail names this mail: its kind and outbox id, never the
        address or anything from the body."""
        return f"{self.kind} outbox={self.id}"

    @property
    def audit_prefix(self) -> str:
        """``mail`` or ``webhook``: audited as ``mail_sent``, ``webhook_failed``…"""
        return "webhook" if self.channel == "webhook" else "mail"


class NewMail(NamedTuple):
    """A composed mail not yet in the outbox, and what the outbox must know about
    it: put there with :meth:`OutboxInBatch.enqueue_many`."""

    mail: ComposedMail
    user_id: int | str | None = None  # audited with its delivery
    expires_at: float | None = None  # when its link dies; failed if still unsent then


class NewEvent(NamedTuple):
    """An event for the app's webhook, not yet in the outbox (see
    :mod:`resetd.outbox.webhook_events`). ``body`` is the JSON sent as is, signed
    when each attempt goes out; ``event_id`` is in it too."""

    kind: str  # the event's type: password.changed, reset.requested
    event_id: str
    body: bytes
    destination: str  # [webhooks] url as listings show it: no query
    user_id: int | str | None


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: str
    recipient: str
    subject: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    last_error: str | None
    sent_at: float | None
    channel: str = "mail"


class Backlog(NamedTuple):
    """What waits in the outbox, for ``/metrics``."""

    pending: int
    failed: int
    oldest_pending_age: float  # seconds; 0 when nothing is pending


@dataclass(frozen=True)
class RelayStatus:
    """``since`` is wall-clock time; ``error`` and ``hint`` are empty when healthy."""

    state: str  # unknown | ok | backing_off | tls_error | session_refused
    since: float
    error: str = ""
    hint: str = ""

    @property
    def healthy(self) -> bool:
        return self.state in ("unknown", "ok")


class RelayStatusStore(Protocol):
    """The relay's state as the outbox worker last saw it, for ``resetd outbox``."""

    async def save(self, relay: str, status: RelayStatus) -> None: ...

    async def load(self) -> tuple[str, RelayStatus] | None:
        """(relay address, status), or None when the outbox has seen nothing since it started."""
        ...

    async def clear(self) -> None:
        """At start: what the last run saw may have been fixed since."""
        ...


class OutboxStore(Protocol):
    """The outbox, for the process named ``owner``."""

    owner: str
    relay_status: RelayStatusStore
    errors: StorageErrors

    async def recover(self, channel: str = "mail") -> int:
        """At start: release the claims of dead owners (see :meth:`release_orphans`)
        and make every unclaimed pending row of ``channel`` due now. Returns how
        many claims were released."""
        ...

    async def release_orphans(self) -> int:
        """Release claims whose lease ran out or whose owner is known dead; returns how many."""
        ...

    async def renew(self, mail_ids: Collection[int], lease: float) -> int:
        """Extend this owner's claims on ``mail_ids`` to ``lease`` seconds from now;
        returns how many it still holds."""
        ...

    async def claim_due(
        self, limit: int, lease: float, held: Collection[int] = (), channel: str = "mail"
    ) -> list[OutgoingMail]:
        """Claim up to ``limit`` due rows of ``channel`` for ``lease`` seconds,
        counting the attempt; ``held`` (ids in hand) are never claimed twice."""
        ...

    async def next_due_at(self, channel: str = "mail") -> float | None:
        """When the earliest pending row of ``channel`` this owner could claim is due."""
        ...

    async def mark_sent(self, mails: Sequence[OutgoingMail]) -> list[OutgoingMail]:
        """Mark sent (and audit) those still held, in one transaction; returns
        those no longer held."""
        ...

    async def mark_failed(
        self, mail: OutgoingMail, error: str, why: str, *, keep_last_error: bool = False
    ) -> bool:
        """Failed for good, audited; False, recording nothing, when no longer held."""
        ...

    async def schedule_retry(self, mail_id: int, at: float, error: str) -> bool:
        """Due again at ``at``, claim given up; False when no longer held."""
        ...

    async def release(self, mail_ids: Collection[int]) -> None:
        """Give back claims never attempted (shutdown); attempts are refunded."""
        ...

    async def counts(self) -> dict[str, int]:
        """Mails per status; always has the keys pending, failed and sent."""
        ...

    async def backlog(self, now: float) -> Backlog:
        """Pending and failed mail, and how long the oldest pending one has waited."""
        ...

    async def list(self, include_sent: bool = False) -> list[OutboxEntry]:
        """Pending and failed mail (and sent, if asked), oldest first."""
        ...

    async def get(self, mail_id: int) -> OutboxEntry | None: ...

    async def retry(self, mail_id: int | None) -> tuple[int, int]:
        """Put one failed mail (or all) back in the queue unless its link expired;
        returns (queued again, left as expired)."""
        ...

    def watch(self, wake: Callable[[], None], channel: str = "mail") -> Watch:
        """Call ``wake()`` when another process may have queued rows of
        ``channel`` (or put some back), until the returned watch is stopped.
        A hint only: the worker polls all the same."""
        ...


class OutboxInTransaction(Protocol):
    async def enqueue(
        self,
        kind: str,
        mail: ComposedMail,
        *,
        user_id: int | str | None = None,
        expires_at: float | None = None,
    ) -> int:
        """Queue ``mail``, due at the transaction's clock; returns the outbox id.
        ``user_id`` is named in the audit trail at delivery; a mail still
        undelivered at ``expires_at`` is failed rather than sent."""
        ...

    async def enqueue_event(self, event: NewEvent) -> int:
        """Queue a webhook event; returns the outbox id."""
        ...


class OutboxInBatch(Protocol):
    def enqueue_many(self, kind: str, mails: Sequence[NewMail]) -> None: ...

    def enqueue_events(self, events: Sequence[NewEvent]) -> None: ...
