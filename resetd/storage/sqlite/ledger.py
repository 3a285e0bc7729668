"""The token ledger on SQLite (see :mod:`resetd.storage.ledger`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from ...db import Database, insert_rows
from ..ledger import IssuedToken, LedgerEntry


async def consume(conn: aiosqlite.Connection, jti: str, now: float) -> bool:
    cur = await conn.execute(
        "UPDATE reset_tokens SET used_at = ? "
        "WHERE jti = ? AND used_at IS NULL AND burned_at IS NULL AND expires_at > ?",
        (now, jti, now),
    )
    return cur.rowcount == 1


def record_many(conn: sqlite3.Connection, tokens: Sequence[IssuedToken]) -> None:
    insert_rows(
        conn,
        "reset_tokens",
        ("jti", "user_id", "issued_at", "expires_at"),
        [(t.jti, str(t.user_id), t.issued_at, t.expires_at) for t in tokens],
    )


class SqliteLedger:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def entry(self, jti: str) -> LedgerEntry | None:
        row = await self.db.fetchone(
            "SELECT expires_at, used_at, burned_at FROM reset_tokens WHERE jti = ?", (jti,)
        )
        return None if row is None else LedgerEntry(*tuple(row))

    async def record_failure(self, jti: str, limit: int, now: float) -> bool:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE reset_tokens SET failed_posts = failed_posts + 1 "
                "WHERE jti = ? AND used_at IS NULL AND burned_at IS NULL",
                (jti,),
            )
            cur = await conn.execute(
                "UPDATE reset_tokens SET burned_at = ? "
                "WHERE jti = ? AND burned_at IS NULL AND failed_posts >= ?",
                (now, jti, limit),
            )
            return cur.rowcount == 1
