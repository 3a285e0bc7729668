"""The audit trail on SQLite (see :mod:`resetd.storage.audit`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from ...db import Database, insert_rows
from ..audit import AuditEvent, AuditRow

COLUMNS = ("at", "event", "user_id", "client_ip", "user_agent", "outcome")


def _row(at: float, row: AuditRow) -> tuple[object, ...]:
    event, outcome, user_id, client_ip, user_agent = row
    uid = None if user_id is None else str(user_id)
    return (at, event, uid, client_ip, (user_agent or "")[:300], outcome)


async def record(conn: aiosqlite.Connection, at: float, row: AuditRow) -> None:
    """One audit row inside the caller's transaction."""
    await conn.execute(
        "INSERT INTO audit (at, event, user_id, client_ip, user_agent, outcome)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        _row(at, row),
    )


def record_many(conn: sqlite3.Connection, at: float, rows: Sequence[AuditRow]) -> None:
    """Audit rows inside the caller's transaction in a BatchWriter thread."""
    insert_rows(conn, "audit", COLUMNS, [_row(at, r) for r in rows])


class SqliteAudit:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, event: str, outcome: str, **kw: str | int | None) -> None:
        ip, agent = kw.get("client_ip"), kw.get("user_agent")
        row: AuditRow = (
            event,
            outcome,
            kw.get("user_id"),
            None if ip is None else str(ip),
            None if agent is None else str(agent),
        )
        at = await self.db.now()
        async with self.db.transaction() as conn:
            await record(conn, at, row)

    async def recent(self, limit: int = 100) -> list[AuditEvent]:
        rows = await self.db.fetchall(
            "SELECT id, at, event, user_id, client_ip, user_agent, outcome FROM audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [AuditEvent(*tuple(r)) for r in rows]
