"""The reset-request queue on SQLite (see :mod:`resetd.storage.requests`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from ...db import Database, insert_rows
from ..requests import FAILED_KEPT, FailedRequest, NewRequest, QueuedRequest
from ..wakeups import PollOnly, Watch


def add_many(conn: sqlite3.Connection, rows: Sequence[NewRequest], now: float) -> None:
    insert_rows(
        conn,
        "reset_requests",
        ("email_norm", "email", "client_ip", "user_agent", "created_at", "limited", "lang"),
        [(n, e, ip, ua, now, int(limited), lang) for n, e, ip, ua, limited, lang in rows],
    )


def claim(conn: sqlite3.Connection, ids: list[int], now: float) -> set[int]:
    if not ids:
        return set()
    marks = ", ".join("?" * len(ids))
    rows = conn.execute(
        f"UPDATE reset_requests SET done_at = ? WHERE id IN ({marks}) AND done_at IS NULL"
        " RETURNING id",
        (now, *ids),
    ).fetchall()
    return {int(r[0]) for r in rows}


def record_failures(conn: sqlite3.Connection, failures: Sequence[tuple[int, str]]) -> None:
    conn.executemany(
        "UPDATE reset_requests SET failure = substr(?, 1, 500) WHERE id = ?",
        [(why, request_id) for request_id, why in failures],
    )


class SqliteRequests:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def pending(self, limit: int) -> list[QueuedRequest]:
        rows = await self.db.fetchall(
            "SELECT id, email_norm, client_ip, user_agent, limited, email, lang FROM reset_requests"
            " WHERE done_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        )
        return [QueuedRequest(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6] or "en") for r in rows]

    async def failed(self, since: float) -> list[FailedRequest]:
        rows = await self.db.fetchall(
            "SELECT id, created_at, done_at, failure FROM reset_requests"
            " WHERE failure IS NOT NULL AND done_at >= ? ORDER BY id",
            (since,),
        )
        return [FailedRequest(r[0], r[1], r[2], r[3]) for r in rows]

    async def purge(self, older_than: float) -> int:
        return await self.db.execute(
            "DELETE FROM reset_requests WHERE done_at < ? AND (failure IS NULL OR done_at < ? - ?)",
            (older_than, older_than, FAILED_KEPT),
        )

    def watch(self, wake: Callable[[], None]) -> Watch:
        """Nothing tells this process what another one queued in the same file:
        its processor finds it at the next poll."""
        return PollOnly()
