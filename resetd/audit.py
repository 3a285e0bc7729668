"""The audit trail: who asked for what, when, from where, and what came of it.

Never a token, a password, a full link or an address: only event names and
outcomes. The outbox adds ``mail_sent`` and ``mail_failed`` (outcome: the mail's
kind and outbox id, plus why it failed) in the transaction that marks the mail,
and ``webhook_sent`` and ``webhook_failed`` likewise for events sent to the app.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from .db import Database, insert_rows


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: float
    event: str
    user_id: str | None
    client_ip: str | None
    user_agent: str | None
    outcome: str


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def record(
        conn: aiosqlite.Connection,
        event: str,
        outcome: str,
        *,
        user_id: int | str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Inside the caller's transaction, so the trail matches what happened."""
        await conn.execute(
            "INSERT INTO audit (at, event, user_id, client_ip, user_agent, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                event,
                None if user_id is None else str(user_id),
                client_ip,
                (user_agent or "")[:300],
                outcome,
            ),
        )

    @staticmethod
    def record_many(
        conn: sqlite3.Connection,
        events: Sequence[tuple[str, str, int | str | None, str | None, str | None]],
    ) -> None:
        """(event, outcome, user_id, client_ip, user_agent) rows, inside the caller's
        transaction in a :class:`~resetd.db.BatchWriter` thread."""
        now = time.time()
        insert_rows(
            conn,
            "audit",
            ("at", "event", "user_id", "client_ip", "user_agent", "outcome"),
            [
                (now, ev, None if uid is None else str(uid), ip, (ua or "")[:300], outcome)
                for ev, outcome, uid, ip, ua in events
            ],
        )

    async def add(self, event: str, outcome: str, **kw: str | int | None) -> None:
        """Record in a transaction of its own."""
        async with self.db.transaction() as conn:
            await self.record(
                conn,
                event,
                outcome,
                user_id=kw.get("user_id"),
                client_ip=None if kw.get("client_ip") is None else str(kw.get("client_ip")),
                user_agent=None if kw.get("user_agent") is None else str(kw.get("user_agent")),
            )

    async def recent(self, limit: int = 100) -> list[AuditEvent]:
        rows = await self.db.fetchall(
            "SELECT id, at, event, user_id, client_ip, user_agent, outcome FROM audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AuditEvent(*tuple(r)) for r in rows]
