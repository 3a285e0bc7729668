"""Signed-in sessions on SQLite (see :mod:`resetd.storage.sessions`).

Every write goes through the database's writer thread: a sign-in, a sign-out
and a session's last_seen are hot paths under a sign-in flood."""

from __future__ import annotations

import sqlite3

import aiosqlite

from ...db import Database
from ..sessions import SESSION_COLUMNS, Ended, SessionRow

ENDED = (
    "(remember = 0 AND (last_seen <= ? OR created_at <= ?)) "
    "OR (remember = 1 AND (last_seen <= ? OR created_at <= ?))"
)


def _create(
    conn: sqlite3.Connection,
    row_id: str,
    user_id: str,
    remember: bool,
    now: float,
    purge: Ended | None,
) -> None:
    if purge is not None:
        conn.execute(f"DELETE FROM sessions WHERE {ENDED}", tuple(purge))
    conn.execute(
        "INSERT INTO sessions (id, user_id, remember, created_at, last_seen) "
        "VALUES (?, ?, ?, ?, ?)",
        (row_id, user_id, int(remember), now, now),
    )


def _delete(conn: sqlite3.Connection, row_id: str) -> None:
    conn.execute("DELETE FROM sessions WHERE id = ?", (row_id,))


def _touch(conn: sqlite3.Connection, row_id: str, now: float) -> None:
    conn.execute(
        "UPDATE sessions SET last_seen = ? WHERE id = ? AND last_seen < ?", (now, row_id, now)
    )


async def end_all(conn: aiosqlite.Connection, user_id: int) -> None:
    await conn.execute("DELETE FROM sessions WHERE user_id = ?", (str(user_id),))


class SqliteSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, row_id: str, user_id: str, remember: bool, now: float, purge: Ended | None
    ) -> None:
        await self.db.writer.run(_create, row_id, user_id, remember, now, purge)

    async def get(self, row_id: str) -> SessionRow | None:
        row = await self.db.fetchone(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (row_id,)
        )
        return SessionRow.of(row)

    async def delete(self, row_id: str) -> None:
        await self.db.writer.run(_delete, row_id)

    async def touch(self, row_id: str, now: float) -> None:
        await self.db.writer.run(_touch, row_id, now)
