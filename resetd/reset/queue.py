"""Storage for step 1: the ``reset_requests`` queue between the form and the mailer.

A request is done once processed: claimed with its mail (or with the reason no
mail was due), or set aside with a ``failure`` when processing it raised, so
that one request never holds up the others. Set-aside requests are kept for a
week for ``resetd outbox`` to show.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from ..db import Database, insert_rows

FAILED_KEPT = 7 * 86400  # seconds a set-aside request stays listed


@dataclass(frozen=True)
class QueuedRequest:
    id: int
    email_norm: str
    client_ip: str
    user_agent: str
    limited: bool
    email: str | None = None  # as typed, trimmed; None for requests queued before v5
    lang: str = "en"  # of the page that asked (requests queued before v8: English)


@dataclass(frozen=True)
class FailedRequest:
    """A request set aside: when it came, when it was given up, and why."""

    id: int
    created_at: float
    done_at: float
    failure: str


class RequestQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def add_many(
        conn: sqlite3.Connection,
        rows: Sequence[tuple[str, str | None, str, str, bool, str]],
        now: float,
    ) -> None:
        """Queue (email_norm, email as typed, client_ip, user_agent, limited, lang)
        rows (BatchWriter thread)."""
        insert_rows(
            conn,
            "reset_requests",
            ("email_norm", "email", "client_ip", "user_agent", "created_at", "limited", "lang"),
            [(n, e, ip, ua, now, int(limited), lang) for n, e, ip, ua, limited, lang in rows],
        )

    async def pending(self, limit: int) -> list[QueuedRequest]:
        """The oldest ``limit`` requests not yet done (a read; claiming is separate)."""
        rows = await self.db.fetchall(
            "SELECT id, email_norm, client_ip, user_agent, limited, email, lang FROM reset_requests"
            " WHERE done_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        )
        return [QueuedRequest(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6] or "en") for r in rows]

    @staticmethod
    def claim(conn: sqlite3.Connection, ids: list[int], now: float) -> set[int]:
        """Mark the requests ``ids`` done, in the caller's transaction (the one that
        also queues their mail, in a BatchWriter thread); returns those this call
        marked. Any another instance claimed first are not among them."""
        if not ids:
            return set()
        marks = ", ".join("?" * len(ids))
        rows = conn.execute(
            f"UPDATE reset_requests SET done_at = ? WHERE id IN ({marks}) AND done_at IS NULL"
            " RETURNING id",
            (now, *ids),
        ).fetchall()
        return {int(r[0]) for r in rows}

    @staticmethod
    def record_failures(conn: sqlite3.Connection, failures: Sequence[tuple[int, str]]) -> None:
        """Note why each claimed request (id, failure) was set aside, in the caller's
        transaction (BatchWriter thread)."""
        conn.executemany(
            "UPDATE reset_requests SET failure = substr(?, 1, 500) WHERE id = ?",
            [(why, request_id) for request_id, why in failures],
        )

    async def failed(self, since: float) -> list[FailedRequest]:
        """Requests set aside since ``since``, oldest first."""
        rows = await self.db.fetchall(
            "SELECT id, created_at, done_at, failure FROM reset_requests"
            " WHERE failure IS NOT NULL AND done_at >= ? ORDER BY id",
            (since,),
        )
        return [FailedRequest(r[0], r[1], r[2], r[3]) for r in rows]

    async def purge(self, older_than: float) -> int:
        """Forget requests done before ``older_than``; set-aside ones are kept
        :data:`FAILED_KEPT` seconds longer."""
        return await self.db.execute(
            "DELETE FROM reset_requests WHERE done_at < ? AND (failure IS NULL OR done_at < ? - ?)",
            (older_than, older_than, FAILED_KEPT),
        )
