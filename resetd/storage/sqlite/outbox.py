"""The outbox on SQLite (see :mod:`resetd.storage.outbox`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence

import aiosqlite

from ...db import ERRORS, Database, Row, insert_rows
from ...instance import known_dead, new_instance_id
from ..outbox import (
    Backlog,
    NewEvent,
    NewMail,
    OutboxEntry,
    OutgoingMail,
    RelayStatusStore,
)
from ..queries import RelayStatusRows
from ..wakeups import PollOnly, Watch
from . import audit


class SqliteOutbox:
    """Every SQL statement about the outbox, for the process named ``owner`` (a
    fresh instance id when not given)."""

    def __init__(self, db: Database, owner: str | None = None) -> None:
        self.db = db
        self.owner = new_instance_id() if owner is None else owner
        self.relay_status: RelayStatusStore = RelayStatusRows(db, "?")
        self.errors = ERRORS

    async def recover(self, channel: str = "mail") -> int:
        """At start: release the claims left behind by processes that died mid-send
        (see :meth:`release_orphans`; claims of live ones are left alone) and make
        every unclaimed pending row of ``channel`` due now, since a restart often
        follows a fix to the relay's or the webhook's settings. Returns how many
        claims were released."""
        released = await self.release_orphans()
        now = await self.db.now()
        await self.db.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending' "
            "AND claimed_until IS NULL AND next_attempt_at > ? AND channel = ?",
            (now, now, channel),
        )
        return released

    async def release_orphans(self) -> int:
        """Release claims whose lease ran out or whose owner is known dead (on this
        host, its process gone: :func:`~resetd.instance.known_dead`). A claim
        that names no owner was made by a resetd from before owners were
        recorded, which may still be running beside a newer one during an
        upgrade: it lasts until its lease runs out. Returns how many."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT claimed_by FROM outbox "
            "WHERE status = 'pending' AND claimed_until IS NOT NULL AND claimed_by IS NOT NULL"
        )
        dead = [r[0] for r in rows if known_dead(r[0], self.owner)]
        marks = ", ".join("?" * len(dead)) or "NULL"
        now = await self.db.now()
        return await self.db.execute(
            "UPDATE outbox SET claimed_until = NULL, claimed_by = NULL "
            "WHERE status = 'pending' AND claimed_until IS NOT NULL AND (claimed_until < ? "
            f"OR claimed_by IN ({marks}))",
            (now, *dead),
        )

    async def renew(self, mail_ids: Collection[int], lease: float) -> int:
        """Extend this process's claims on ``mail_ids`` to ``lease`` seconds from
        now; returns how many it still holds. A claim left out lapses: a mail
        whose outcome could not be recorded is claimed and sent again then."""
        if not mail_ids:
            return 0
        now = await self.db.now()
        marks = ", ".join("?" * len(mail_ids))
        return await self.db.execute(
            f"UPDATE outbox SET claimed_until = ? WHERE id IN ({marks}) AND claimed_by = ? "
            "AND status = 'pending'",
            (now + lease, *mail_ids, self.owner),
        )

    async def claim_due(
        self, limit: int, lease: float, held: Collection[int] = (), channel: str = "mail"
    ) -> list[OutgoingMail]:
        """Claim up to ``limit`` due rows of ``channel`` for ``lease`` seconds,
        counting the attempt.

        ``held`` are ids this process already has in hand; they are never claimed
        twice even if their lease ran out during a slow send."""
        now = await self.db.now()
        rows = await self.db.writer.run(
            _claim, self.owner, now, lease, limit, frozenset(held), channel
        )
        return [
            OutgoingMail(
                id=r["id"],
                kind=r["kind"],
                sender=r["sender"],
                recipient=r["recipient"],
                message=r["message"],
                attempts=r["attempts"] + 1,
                created_at=r["created_at"],
                expires_at=r["expires_at"],
                user_id=r["user_id"],
                channel=channel,
            )
            for r in rows
        ]

    async def next_due_at(self, channel: str = "mail") -> float | None:
        """When the earliest pending row of ``channel`` this process could claim is
        due (another process's claim first has to run out); None when there is none."""
        row = await self.db.fetchone(
            "SELECT MIN(CASE WHEN claimed_until IS NULL THEN next_attempt_at"
            " ELSE MAX(next_attempt_at, claimed_until) END) AS due FROM outbox "
            "WHERE status = 'pending' AND channel = ? AND (claimed_by IS NULL OR claimed_by != ?)",
            (channel, self.owner),
        )
        if row is None or row["due"] is None:
            return None
        return float(row["due"])

    async def mark_sent(self, mails: Sequence[OutgoingMail]) -> list[OutgoingMail]:
        """Record that the relay accepted ``mails``, with their audit rows, in one
        transaction. Only mails this process still holds are marked; returns
        those it no longer held (another process took them over)."""
        if not mails:
            return []
        marked = await self.db.writer.run(_mark_sent, self.owner, mails, await self.db.now())
        return [m for m in mails if m.id not in marked]

    async def mark_failed(
        self, mail: OutgoingMail, error: str, why: str, *, keep_last_error: bool = False
    ) -> bool:
        """Failed for good with ``error``, audited as ``mail_failed`` (or
        ``webhook_failed``) with the short ``why`` (rejected, gave_up, expired).
        ``keep_last_error`` appends the error recorded by the previous attempt.
        Returns False, recording nothing, when this process no longer holds it."""
        if keep_last_error:
            text = "substr(? || COALESCE(' (last error: ' || last_error || ')', ''), 1, 500)"
        else:
            text = "substr(?, 1, 500)"
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                f"UPDATE outbox SET status = 'failed', claimed_until = NULL, last_error = {text} "
                "WHERE id = ? AND claimed_by = ? AND status = 'pending'",
                (error, mail.id, self.owner),
            )
            if cur.rowcount == 0:
                return False
            await audit.record(
                conn,
                await self.db.now(),
                (
                    f"{mail.audit_prefix}_failed",
                    f"{mail.audit_outcome} {why}",
                    mail.user_id,
                    None,
                    None,
                ),
            )
        return True

    async def schedule_retry(self, mail_id: int, at: float, error: str) -> bool:
        """Due again at ``at``, claim given up; False when this process no longer
        held the mail (nothing is changed then)."""
        changed = await self.db.execute(
            "UPDATE outbox SET next_attempt_at = ?, last_error = ?, claimed_until = NULL, "
            "claimed_by = NULL WHERE id = ? AND claimed_by = ? AND status = 'pending'",
            (at, error[:500], mail_id, self.owner),
        )
        return changed > 0

    async def release(self, mail_ids: Collection[int]) -> None:
        """Give back claims that were never attempted (shutdown); attempts are refunded."""
        if not mail_ids:
            return
        async with self.db.transaction() as conn:
            marks = ", ".join("?" * len(mail_ids))
            await conn.execute(
                "UPDATE outbox SET claimed_until = NULL, claimed_by = NULL, "
                f"attempts = attempts - 1 WHERE id IN ({marks}) AND status = 'pending' "
                "AND claimed_by = ?",
                (*mail_ids, self.owner),
            )

    async def counts(self) -> dict[str, int]:
        """Mails per status; always has the keys pending, failed and sent."""
        rows = await self.db.fetchall("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        out = {"pending": 0, "sent": 0, "failed": 0}
        out.update({r["status"]: int(r["n"]) for r in rows})
        return out

    async def backlog(self, now: float) -> Backlog:
        """Pending and failed mail, and how long the oldest pending one has waited."""
        rows = await self.db.fetchall(
            "SELECT status, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox "
            "WHERE status IN ('pending', 'failed') GROUP BY status"
        )
        by = {r["status"]: r for r in rows}
        pending = by.get("pending")
        oldest = max(0.0, now - float(pending["oldest"])) if pending is not None else 0.0
        failed = by.get("failed")
        return Backlog(
            int(pending["n"]) if pending else 0, int(failed["n"]) if failed else 0, oldest
        )

    async def list(self, include_sent: bool = False) -> list[OutboxEntry]:
        """Pending and failed mail (and sent, if asked), oldest first."""
        rows = await self.db.fetchall(
            "SELECT id, kind, recipient, subject, status, attempts, created_at, "
            "next_attempt_at, last_error, sent_at, channel FROM outbox "
            "WHERE status IN ('pending', 'failed') OR (? AND status = 'sent') ORDER BY id",
            (int(include_sent),),
        )
        return [_entry(r) for r in rows]

    async def get(self, mail_id: int) -> OutboxEntry | None:
        row = await self.db.fetchone(
            "SELECT id, kind, recipient, subject, status, attempts, created_at, "
            "next_attempt_at, last_error, sent_at, channel FROM outbox WHERE id = ?",
            (mail_id,),
        )
        return None if row is None else _entry(row)

    async def retry(self, mail_id: int | None) -> tuple[int, int]:
        """Put one failed mail (or all, with None) back in the queue, due now and with
        a fresh ``max_age``. A reset mail whose link has expired stays failed: sent
        now, it would only carry a dead link. Returns (queued again, left as expired).
        Sent and pending mail are left alone."""
        now = await self.db.now()
        which = "status = 'failed'" + ("" if mail_id is None else " AND id = ?")
        args: tuple[object, ...] = () if mail_id is None else (mail_id,)
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, created_at = ?, "
                "attempts = 0, claimed_until = NULL, claimed_by = NULL "
                f"WHERE {which} AND (expires_at IS NULL OR expires_at > ?)",
                (now, now, *args, now),
            )
            queued = cur.rowcount
            async with conn.execute(
                f"SELECT COUNT(*) FROM outbox WHERE {which} AND expires_at <= ?", (*args, now)
            ) as found:
                row = await found.fetchone()
        return queued, int(row[0]) if row else 0

    def watch(self, wake: Callable[[], None], channel: str = "mail") -> Watch:
        """Nothing tells this process what another one queued in the same file:
        its worker finds it at the next poll."""
        return PollOnly()


def _claim(
    conn: sqlite3.Connection,
    owner: str,
    now: float,
    lease: float,
    limit: int,
    held: frozenset[int],
    channel: str,
) -> list[sqlite3.Row]:
    """SqliteOutbox.claim_due's transaction, in the database's writer thread."""
    found = conn.execute(
        "SELECT id, kind, sender, recipient, message, attempts, created_at, expires_at, "
        "user_id FROM outbox "
        "WHERE status = 'pending' AND channel = ? AND next_attempt_at <= ? "
        "AND (claimed_until IS NULL OR claimed_until < ?) "
        "ORDER BY next_attempt_at, id LIMIT ?",
        (channel, now, now, limit + len(held)),
    ).fetchall()
    rows = [r for r in found if r["id"] not in held][:limit]
    if rows:
        marks = ", ".join("?" * len(rows))
        conn.execute(
            "UPDATE outbox SET claimed_until = ?, claimed_by = ?, attempts = attempts + 1 "
            f"WHERE id IN ({marks})",
            (now + lease, owner, *(r["id"] for r in rows)),
        )
    return rows


def _mark_sent(
    conn: sqlite3.Connection, owner: str, mails: Sequence[OutgoingMail], now: float
) -> set[int]:
    """SqliteOutbox.mark_sent's transaction, in the database's writer thread;
    returns the ids it marked."""
    marks = ", ".join("?" * len(mails))
    rows = conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ?, claimed_until = NULL, "
        f"last_error = NULL, message = ? WHERE id IN ({marks}) AND claimed_by = ? "
        "AND status = 'pending' RETURNING id",
        # The body held a live reset link; once delivered there is no reason to keep it.
        (now, b"", *(m.id for m in mails), owner),
    ).fetchall()
    marked = {int(r[0]) for r in rows}
    audit.record_many(
        conn,
        now,
        [
            (f"{m.audit_prefix}_sent", m.audit_outcome, m.user_id, None, None)
            for m in mails
            if m.id in marked
        ],
    )
    return marked


OUTBOX_COLUMNS = (
    "kind", "sender", "recipient", "subject", "message", "created_at", "next_attempt_at",
    "user_id", "expires_at",
)  # fmt: skip


def _row(kind: str, new: NewMail, now: float) -> tuple[object, ...]:
    m = new.mail
    user_id = None if new.user_id is None else str(new.user_id)
    return (kind, m.sender, m.recipient, m.subject, m.data, now, now, user_id, new.expires_at)


EVENT_COLUMNS = (
    "kind", "sender", "recipient", "subject", "message", "created_at", "next_attempt_at",
    "user_id", "channel",
)  # fmt: skip


def _event_row(e: NewEvent, now: float) -> tuple[object, ...]:
    """A webhook event's row: no sender; the destination shown as its recipient
    and the event's id as its subject, for listings."""
    user_id = None if e.user_id is None else str(e.user_id)
    return (e.kind, "", e.destination, e.event_id, e.body, now, now, user_id, "webhook")


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


async def enqueue(
    conn: aiosqlite.Connection,
    kind: str,
    new: NewMail,
    now: float,
) -> int:
    """Queue a mail inside the caller's transaction; returns the outbox id."""
    cur = await conn.execute(
        f"INSERT INTO outbox ({', '.join(OUTBOX_COLUMNS)}) VALUES "
        f"({', '.join('?' * len(OUTBOX_COLUMNS))})",
        _row(kind, new, now),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def enqueue_many(conn: sqlite3.Connection, kind: str, mails: Sequence[NewMail], now: float) -> None:
    """Queue several mails inside the caller's transaction (BatchWriter thread)."""
    insert_rows(conn, "outbox", OUTBOX_COLUMNS, [_row(kind, new, now) for new in mails])


async def enqueue_event(conn: aiosqlite.Connection, event: NewEvent, now: float) -> int:
    """Queue a webhook event inside the caller's transaction; returns the outbox id."""
    cur = await conn.execute(
        f"INSERT INTO outbox ({', '.join(EVENT_COLUMNS)}) VALUES "
        f"({', '.join('?' * len(EVENT_COLUMNS))})",
        _event_row(event, now),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def enqueue_events(conn: sqlite3.Connection, events: Sequence[NewEvent], now: float) -> None:
    """Queue several webhook events inside the caller's transaction (BatchWriter thread)."""
    insert_rows(conn, "outbox", EVENT_COLUMNS, [_event_row(e, now) for e in events])
