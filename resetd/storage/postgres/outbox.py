"""The outbox on PostgreSQL (see :mod:`resetd.storage.outbox`), shared by
every instance on the database.

The rules are SQLite's (:mod:`resetd.storage.sqlite.outbox`): a claim names
its owner and lasts a lease, and a claimed row changes only where the claim
is still the caller's. What several instances add:

* a claim picks its rows ``FOR UPDATE SKIP LOCKED``: instances claiming at
  once get different rows and never wait for each other;
* a statement that changes several claimed rows locks them in id order
  first, so two transactions never wait for each other in a cycle
  (a release of orphans skips locked rows instead: they are being worked on);
* every time is the database's clock, read in the transaction that uses it;
* queuing a row notifies channel ``outbox`` with the row's channel (``mail``
  or ``webhook``) as payload, which :meth:`PostgresOutbox.watch` hears;
* an instance holds a liveness lock from its first claim on (:mod:`.liveness`),
  so that one which died on another host has its claims released within
  seconds, not at the end of their lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from ...instance import known_dead, new_instance_id
from ..audit import AuditRow
from ..errors import StorageErrors
from ..outbox import (
    Backlog,
    NewEvent,
    NewMail,
    OutboxEntry,
    OutgoingMail,
    RelayStatusStore,
)
from ..queries import RelayStatusRows
from . import liveness
from .engine import PostgresEngine, Row, Transaction, notify
from .listen import Listener
from .wakeups import Wake, Wakeups, Watching, notify_sync

log = logging.getLogger(__name__)

# The driver's errors; ``unavailable``: the server or the connection, not a row.
ERRORS = StorageErrors(error=(psycopg.Error,), unavailable=(psycopg.OperationalError,))
CHANNEL = "outbox"  # notified with the queued row's channel as payload
CLOCK = "SELECT extract(epoch FROM clock_timestamp())::float8"

_ENTRY = (
    "SELECT id, kind, recipient, subject, status, attempts, created_at, "
    "next_attempt_at, last_error, sent_at, channel FROM outbox "
)


async def clock(tx: Transaction) -> float:
    """The database's clock, now (not at the transaction's start)."""
    row = await tx.fetchone(CLOCK)
    assert row is not None
    return float(row[0])


class PostgresOutbox:
    """Every SQL statement about the outbox, for the instance named ``owner`` (a
    fresh instance id, holding a liveness lock, when not given)."""

    def __init__(self, engine: PostgresEngine, owner: str | None = None) -> None:
        self.engine = engine
        self.owner = liveness.with_liveness(new_instance_id()) if owner is None else owner
        self.relay_status: RelayStatusStore = RelayStatusRows(engine, "%s")
        self.errors = ERRORS
        self._wakeups = Wakeups(engine, CHANNEL)
        self._liveness: Listener | None = None

    async def _live(self) -> None:
        """Before this instance's first claim: take its liveness lock (for an owner
        that says it holds one), FIRST_WAIT seconds at most. Later claims never
        wait for it: a lost lock connection is taken again in the background."""
        if self._liveness is not None or not liveness.uses_liveness(self.owner):
            return
        holder = self._liveness = self.engine.hold(
            liveness.lock_of(self.owner), "the liveness lock", liveness.APPLICATION_NAME
        )
        try:
            await asyncio.wait_for(holder.wait_listening(), liveness.FIRST_WAIT)
        except TimeoutError:
            # Claiming anyway: mail delayed would be worse than the chance of
            # another instance sending it again meanwhile.
            log.warning("outbox: the liveness lock is not held yet; claiming without it")

    async def recover(self, channel: str = "mail") -> int:
        """At start: release the claims of dead instances (see
        :meth:`release_orphans`; live ones keep theirs, however many start
        meanwhile) and make every unclaimed pending row of ``channel`` due now.
        Returns how many claims were released."""
        await self._live()
        released = await self.release_orphans()
        async with self.engine.transaction() as tx:
            now = await clock(tx)
            # Rows locked meanwhile are another instance's to change (it is
            # claiming them, or starting too): passed by, never waited for, so
            # instances starting together cannot deadlock here.
            await tx.execute(
                "WITH waiting AS (SELECT id FROM outbox WHERE status = 'pending' "
                "AND claimed_until IS NULL AND next_attempt_at > %s AND channel = %s "
                "FOR UPDATE SKIP LOCKED) UPDATE outbox SET next_attempt_at = %s "
                "FROM waiting WHERE outbox.id = waiting.id",
                (now, channel, now),
            )
        return released

    async def release_orphans(self) -> int:
        """Release claims whose lease ran out or whose owner is known dead: on this
        host, its process gone (:func:`~resetd.instance.known_dead`); anywhere,
        its liveness lock free (:mod:`.liveness`). An owner from before liveness
        locks, on another host, keeps its claims until their lease runs out. A
        claim naming no owner (a resetd from before owners) lasts its lease.
        Returns how many."""
        async with self.engine.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT DISTINCT claimed_by FROM outbox WHERE status = 'pending' "
                "AND claimed_until IS NOT NULL AND claimed_by IS NOT NULL"
            )
            owners = [r[0] for r in rows if r[0] != self.owner]
            dead = [owner for owner in owners if known_dead(owner, self.owner)]
            dead += await liveness.gone(
                tx, [o for o in owners if o not in dead and liveness.uses_liveness(o)]
            )
            now = await clock(tx)
            return await tx.execute(
                "WITH orphan AS (SELECT id FROM outbox WHERE status = 'pending' "
                "AND claimed_until IS NOT NULL AND (claimed_until < %s OR claimed_by = ANY(%s)) "
                "ORDER BY id FOR UPDATE SKIP LOCKED) "
                "UPDATE outbox SET claimed_until = NULL, claimed_by = NULL "
                "FROM orphan WHERE outbox.id = orphan.id",
                (now, dead),
            )

    async def renew(self, mail_ids: Collection[int], lease: float) -> int:
        """Extend this instance's claims on ``mail_ids`` to ``lease`` seconds from
        now; returns how many it still holds."""
        if not mail_ids:
            return 0
        async with self.engine.transaction() as tx:
            now = await clock(tx)
            return await tx.execute(
                f"WITH mine AS ({_MINE}) UPDATE outbox SET claimed_until = %s "
                "FROM mine WHERE outbox.id = mine.id",
                (list(mail_ids), self.owner, now + lease),
            )

    async def claim_due(
        self, limit: int, lease: float, held: Collection[int] = (), channel: str = "mail"
    ) -> list[OutgoingMail]:
        """Claim up to ``limit`` due rows of ``channel`` for ``lease`` seconds,
        counting the attempt, oldest due first. ``held`` (ids this instance has
        in hand) are never claimed twice, even if their lease ran out; rows
        another instance is claiming at this moment are skipped, not waited for."""
        await self._live()
        async with self.engine.transaction() as tx:
            now = await clock(tx)
            rows = await tx.fetchall(
                "WITH due AS (SELECT id FROM outbox WHERE status = 'pending' AND channel = %s "
                "AND next_attempt_at <= %s AND (claimed_until IS NULL OR claimed_until < %s) "
                "AND id <> ALL(%s) ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
                "UPDATE outbox SET claimed_until = %s, claimed_by = %s, "
                "attempts = outbox.attempts + 1 FROM due WHERE outbox.id = due.id "
                "RETURNING outbox.id, kind, sender, recipient, message, attempts, created_at, "
                "expires_at, user_id, next_attempt_at",
                (channel, now, now, list(held), limit, now + lease, self.owner),
            )
        rows.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
        return [
            OutgoingMail(
                id=r["id"],
                kind=r["kind"],
                sender=r["sender"],
                recipient=r["recipient"],
                message=bytes(r["message"]),
                attempts=r["attempts"],  # already counting this claim's attempt
                created_at=r["created_at"],
                expires_at=r["expires_at"],
                user_id=r["user_id"],
                channel=channel,
            )
            for r in rows
        ]

    async def next_due_at(self, channel: str = "mail") -> float | None:
        """When the earliest pending row of ``channel`` this instance could claim
        is due (another instance's claim first has to run out); None when there
        is none. Told by this host's clock (``time.time()``), which the worker
        waits by: the database's says how long is left, whatever the two
        clocks' difference (a host ahead would otherwise find nothing due yet,
        again and again, until the database's clock caught up)."""
        async with self.engine.transaction() as tx:
            row = await tx.fetchone(
                "SELECT MIN(CASE WHEN claimed_until IS NULL THEN next_attempt_at"
                " ELSE GREATEST(next_attempt_at, claimed_until) END)"
                " - extract(epoch FROM clock_timestamp())::float8 FROM outbox "
                "WHERE status = 'pending' AND channel = %s AND claimed_by IS DISTINCT FROM %s",
                (channel, self.owner),
            )
        return None if row is None or row[0] is None else time.time() + float(row[0])

    async def mark_sent(self, mails: Sequence[OutgoingMail]) -> list[OutgoingMail]:
        """Record that the relay accepted ``mails``, with their audit rows, in one
        transaction. Only mails this instance still holds are marked; returns
        those it no longer held (another instance took them over)."""
        if not mails:
            return []
        async with self.engine.transaction() as tx:
            now = await clock(tx)
            rows = await tx.fetchall(
                f"WITH mine AS ({_MINE}) UPDATE outbox SET status = 'sent', sent_at = %s, "
                "claimed_until = NULL, last_error = NULL, message = %s "
                "FROM mine WHERE outbox.id = mine.id RETURNING outbox.id",
                # The body held a live reset link; once delivered there is no reason to keep it.
                ([m.id for m in mails], self.owner, now, b""),
            )
            marked = {int(r[0]) for r in rows}
            await record_audit(
                tx,
                now,
                [
                    (f"{m.audit_prefix}_sent", m.audit_outcome, m.user_id, None, None)
                    for m in mails
                    if m.id in marked
                ],
            )
        return [m for m in mails if m.id not in marked]

    async def mark_failed(
        self, mail: OutgoingMail, error: str, why: str, *, keep_last_error: bool = False
    ) -> bool:
        """Failed for good with ``error``, audited as ``mail_failed`` (or
        ``webhook_failed``) with the short ``why``; ``keep_last_error`` appends
        the previous attempt's error. False, recording nothing, when this
        instance no longer holds it."""
        if keep_last_error:
            text = "substr(%s::text || COALESCE(' (last error: ' || last_error || ')', ''), 1, 500)"
        else:
            text = "substr(%s::text, 1, 500)"
        async with self.engine.transaction() as tx:
            changed = await tx.execute(
                f"UPDATE outbox SET status = 'failed', claimed_until = NULL, last_error = {text} "
                "WHERE id = %s AND claimed_by = %s AND status = 'pending'",
                (error, mail.id, self.owner),
            )
            if changed == 0:
                return False
            row: AuditRow = (
                f"{mail.audit_prefix}_failed",
                f"{mail.audit_outcome} {why}",
                mail.user_id,
                None,
                None,
            )
            await record_audit(tx, await clock(tx), [row])
        return True

    async def schedule_retry(self, mail_id: int, at: float, error: str) -> bool:
        """Due again at ``at``, claim given up; False when this instance no longer
        held the mail (nothing is changed then)."""
        changed = await self.engine.execute(
            "UPDATE outbox SET next_attempt_at = %s, last_error = %s, claimed_until = NULL, "
            "claimed_by = NULL WHERE id = %s AND claimed_by = %s AND status = 'pending'",
            (at, error[:500], mail_id, self.owner),
        )
        return changed > 0

    async def release(self, mail_ids: Collection[int]) -> None:
        """Give back claims that were never attempted (shutdown); attempts are refunded."""
        if not mail_ids:
            return
        await self.engine.execute(
            f"WITH mine AS ({_MINE}) UPDATE outbox SET claimed_until = NULL, claimed_by = NULL, "
            "attempts = outbox.attempts - 1 FROM mine WHERE outbox.id = mine.id",
            (list(mail_ids), self.owner),
        )

    async def counts(self) -> dict[str, int]:
        """Mails per status; always has the keys pending, failed and sent."""
        rows = await self.engine.fetchall("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        out = {"pending": 0, "sent": 0, "failed": 0}
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    async def backlog(self, now: float) -> Backlog:
        """Pending and failed mail, and how long the oldest pending one has waited."""
        rows = await self.engine.fetchall(
            "SELECT status, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox "
            "WHERE status IN ('pending', 'failed') GROUP BY status"
        )
        by = {r["status"]: r for r in rows}
        pending, failed = by.get("pending"), by.get("failed")
        oldest = max(0.0, now - float(pending["oldest"])) if pending is not None else 0.0
        return Backlog(
            int(pending["n"]) if pending else 0, int(failed["n"]) if failed else 0, oldest
        )

    async def list(self, include_sent: bool = False) -> list[OutboxEntry]:
        """Pending and failed mail (and sent, if asked), oldest first."""
        rows = await self.engine.fetchall(
            _ENTRY + "WHERE status IN ('pending', 'failed') OR (%s AND status = 'sent') "
            "ORDER BY id",
            (include_sent,),
        )
        return [_entry(r) for r in rows]

    async def get(self, mail_id: int) -> OutboxEntry | None:
        row = await self.engine.fetchone(_ENTRY + "WHERE id = %s", (mail_id,))
        return None if row is None else _entry(row)

    async def retry(self, mail_id: int | None) -> tuple[int, int]:
        """Put one failed mail (or all, with None) back in the queue, due now and with
        a fresh ``max_age``, waking the workers of every instance. A reset mail
        whose link has expired stays failed. Returns (queued again, left as
        expired). Sent and pending mail are left alone."""
        which = "status = 'failed'" + ("" if mail_id is None else " AND id = %s")
        args: tuple[object, ...] = () if mail_id is None else (mail_id,)
        async with self.engine.transaction() as tx:
            now = await clock(tx)
            queued = await tx.fetchall(
                "UPDATE outbox SET status = 'pending', next_attempt_at = %s, created_at = %s, "
                "attempts = 0, claimed_until = NULL, claimed_by = NULL "
                f"WHERE {which} AND (expires_at IS NULL OR expires_at > %s) RETURNING channel",
                (now, now, *args, now),
            )
            row = await tx.fetchone(
                f"SELECT COUNT(*) FROM outbox WHERE {which} AND expires_at <= %s", (*args, now)
            )
            for channel in sorted({r[0] for r in queued}):
                await notify(tx, CHANNEL, channel)
        return len(queued), int(row[0]) if row else 0

    def watch(self, wake: Wake, channel: str = "mail") -> Watching:
        """Call ``wake()`` when any instance queued rows of ``channel`` (LISTEN on
        one connection of this store's, shared by its watchers) and whenever
        that connection was lost and made again."""
        return self._wakeups.watch(wake, channel)


# This owner's pending rows among ids %s, locked in id order.
_MINE = (
    "SELECT id FROM outbox WHERE id = ANY(%s) AND claimed_by = %s AND status = 'pending' "
    "ORDER BY id FOR UPDATE"
)


def _entry(r: Row) -> OutboxEntry:
    return OutboxEntry(
        id=r["id"],
        kind=r["kind"],
        recipient=r["recipient"],
        subject=r["subject"],
        status=r["status"],
        attempts=r["attempts"],
        created_at=r["created_at"],
        next_attempt_at=r["next_attempt_at"],
        last_error=r["last_error"],
        sent_at=r["sent_at"],
        channel=r["channel"],
    )


async def record_audit(tx: Transaction, at: float, rows: Sequence[AuditRow]) -> None:
    """Audit rows of deliveries, in ``tx``: as the audit trail records them
    (:mod:`resetd.storage.sqlite.audit`), without address or client."""
    if not rows:
        return
    await tx.execute(
        "INSERT INTO audit (at, event, user_id, client_ip, user_agent, outcome) "
        "SELECT %s, event, user_id, NULL, '', outcome "
        "FROM unnest(%s::text[], %s::text[], %s::text[]) AS r(event, user_id, outcome)",
        (
            at,
            [r[0] for r in rows],
            [None if r[2] is None else str(r[2]) for r in rows],
            [r[1] for r in rows],
        ),
    )


OUTBOX_COLUMNS = (
    "kind", "sender", "recipient", "subject", "message", "created_at", "next_attempt_at",
    "user_id", "expires_at",
)  # fmt: skip
_INSERT_MAIL = (
    f"INSERT INTO outbox ({', '.join(OUTBOX_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(OUTBOX_COLUMNS))})"
)


def _row(kind: str, new: NewMail, now: float) -> tuple[object, ...]:
    m = new.mail
    user_id = None if new.user_id is None else str(new.user_id)
    return (kind, m.sender, m.recipient, m.subject, m.data, now, now, user_id, new.expires_at)


EVENT_COLUMNS = (
    "kind", "sender", "recipient", "subject", "message", "created_at", "next_attempt_at",
    "user_id", "channel",
)  # fmt: skip
_INSERT_EVENT = (
    f"INSERT INTO outbox ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))})"
)


def _event_row(e: NewEvent, now: float) -> tuple[object, ...]:
    """A webhook event's row: no sender; the destination shown as its recipient
    and the event's id as its subject, for listings."""
    user_id = None if e.user_id is None else str(e.user_id)
    return (e.kind, "", e.destination, e.event_id, e.body, now, now, user_id, "webhook")


async def enqueue(tx: Transaction, kind: str, new: NewMail, now: float) -> int:
    """Queue a mail inside the caller's transaction; returns the outbox id. Every
    instance's outbox worker is woken when the transaction commits."""
    row = await tx.fetchone(_INSERT_MAIL + " RETURNING id", _row(kind, new, now))
    assert row is not None
    await notify(tx, CHANNEL, "mail")
    return int(row[0])


async def enqueue_event(tx: Transaction, event: NewEvent, now: float) -> int:
    """Queue a webhook event inside the caller's transaction; returns the outbox id."""
    row = await tx.fetchone(_INSERT_EVENT + " RETURNING id", _event_row(event, now))
    assert row is not None
    await notify(tx, CHANNEL, "webhook")
    return int(row[0])


def enqueue_many(
    conn: psycopg.Connection[Any], kind: str, mails: Sequence[NewMail], now: float
) -> None:
    """Queue several mails inside the caller's transaction (a batch's thread)."""
    if not mails:
        return
    with conn.cursor() as cur:
        cur.executemany(_INSERT_MAIL, [_row(kind, new, now) for new in mails])
    notify_sync(conn, CHANNEL, "mail")


def enqueue_events(conn: psycopg.Connection[Any], events: Sequence[NewEvent], now: float) -> None:
    """Queue several webhook events inside the caller's transaction (a batch's thread)."""
    if not events:
        return
    with conn.cursor() as cur:
        cur.executemany(_INSERT_EVENT, [_event_row(e, now) for e in events])
    notify_sync(conn, CHANNEL, "webhook")
