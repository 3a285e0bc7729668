"""Storage for step 1: the ``reset_requests`` queue between the form and the mailer."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

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

    async def pending(self, limit: int) -> list[QueuedRequest]:
        """The oldest ``limit`` requests not yet done (a read; claiming is separate)."""
        rows = await self.db.fetchall(
            "SELECT id, email_norm, client_ip, user_agent, limited FROM reset_requests"
            " WHERE done_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        )
        return [QueuedRequest(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

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

    async def purge(self, older_than: float) -> int:
        return await self.db.execute(
            "DELETE FROM reset_requests WHERE done_at IS NOT NULL AND done_at < ?", (older_than,)
        )
