"""The audit trail on PostgreSQL (see :mod:`resetd.storage.audit`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ..audit import AuditEvent, AuditRow, audit_row, stored_row
from .clock import transaction_now
from .engine import PostgresEngine, Transaction

_INSERT = (
    "INSERT INTO audit (at, event, user_id, client_ip, user_agent, outcome)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


async def record(tx: Transaction, at: float, row: AuditRow) -> None:
    """One audit row inside the caller's transaction."""
    await tx.execute(_INSERT, stored_row(at, row))


def record_many(conn: psycopg.Connection[Any], at: float, rows: Sequence[AuditRow]) -> None:
    """Audit rows inside the caller's transaction, in a batch's thread."""
    with conn.cursor() as cur:
        cur.executemany(_INSERT, [stored_row(at, r) for r in rows])


class PostgresAudit:
    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine

    async def add(self, event: str, outcome: str, **kw: str | int | None) -> None:
        row = audit_row(event, outcome, **kw)
        async with self.engine.transaction() as tx:
            await record(tx, await transaction_now(tx), row)

    async def recent(self, limit: int = 100) -> list[AuditEvent]:
        rows = await self.engine.fetchall(
            "SELECT id, at, event, user_id, client_ip, user_agent, outcome FROM audit "
            "ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [AuditEvent(*tuple(r)) for r in rows]
