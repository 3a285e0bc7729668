"""The audit trail on SQLite (see :mod:`resetd.storage.audit`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import aiosqlite

from ...db import Database, insert_rows
from ..audit import AuditEvent, AuditRow, audit_row, stored_row

COLUMNS = ("at", "event", "user_id", "client_ip", "user_agent", "outcome")


async def record(conn: aiosqlite.Connection, at: float, row: AuditRow) -> None:
    """One audit row inside the caller's transaction."""
    await conn.execute(
        "INSERT INTO audit (at, event, user_id, client_ip, user_agent, outcome)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        stored_row(at, row),
    )


def record_many(conn: sqlite3.Connection, at: float, rows: Sequence[AuditRow]) -> None:
    """Audit rows inside the caller's transaction in a BatchWriter thread."""
    insert_rows(conn, "audit", COLUMNS, [stored_row(at, r) for r in rows])


class SqliteAudit:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, event: str, outcome: str, **kw: str | int | None) -> None:
        row = audit_row(event, outcome, **kw)
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
