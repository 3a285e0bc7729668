"""Storage for step 1: the ``reset_requests`` queue between the form and the mailer."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import aiosqlite

from .db import Database, insert_rows


@dataclass(frozen=True)
class QueuedRequest:
    id: int
    email_norm: str
    client_ip: str
    user_agent: str
    limited: bool


class RequestQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def add_many(
        conn: sqlite3.Connection, rows: list[tuple[str, str, str, bool]], now: float
    ) -> None:
        """Queue (email_norm, client_ip, user_agent, limited) rows (BatchWriter thread)."""
        insert_rows(
            conn,
            "reset_requests",
            ("email_norm", "client_ip", "user_agent", "created_at", "limited"),
            [(e, ip, ua, now, int(limited)) for e, ip, ua, limited in rows],
        )

    @staticmethod
    async def claim(conn: aiosqlite.Connection, limit: int) -> list[QueuedRequest]:
        """Mark up to ``limit`` pending requests done, in the caller's transaction (the
        one that also queues their mail), and return them. Another instance's
        transaction can never claim the same rows."""
        async with conn.execute(
            "UPDATE reset_requests SET done_at = ? WHERE id IN ("
            " SELECT id FROM reset_requests WHERE done_at IS NULL ORDER BY id LIMIT ?)"
            " RETURNING id, email_norm, client_ip, user_agent, limited",
            (time.time(), limit),
        ) as cur:
            rows = await cur.fetchall()
        return sorted(
            (QueuedRequest(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows), key=lambda q: q.id
        )

    async def has_pending(self) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM reset_requests WHERE done_at IS NULL LIMIT 1")
        return row is not None

    async def purge(self, older_than: float) -> int:
        return await self.db.execute(
            "DELETE FROM reset_requests WHERE done_at IS NOT NULL AND done_at < ?", (older_than,)
        )
