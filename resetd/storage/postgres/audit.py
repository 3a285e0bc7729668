"""The audit trail on PostgreSQL (see :mod:`resetd.storage.audit`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ..audit import AuditEvent, AuditRow
from .clock import transaction_now
from .engine import PostgresEngine, Transaction

_INSERT = (
    "INSERT INTO audit (at, event, user_id, client_ip, user_agent, outcome)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


def _row(at: float, row: AuditRow) -> tuple[object, ...]:
    event, outcome, user_id, client_ip, user_agent = row
    uid = None if user_id is None else str(user_id)
    return (at, event, uid, client_ip, (user_agent or "")[:300], outcome)


async def record(tx: Transaction, at: float, row: AuditRow) -> None:
    """One audit row inside the caller's transaction."""
    await tx.execute(_INSERT, _row(at, row))


def record_many(conn: psycopg.Connection[Any], at: float, rows: Sequence[AuditRow]) -> None:
    """Audit rows inside the caller's transaction, in a batch's thread."""
    with conn.cursor() as cur:
        cur.executemany(_INSERT, [_row(at, r) for r in rows])


class PostgresAudit:
    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine

    async def add(self, event: str, outcome: str, **kw: str | int | None) -> None:
        ip, agent = kw.get("client_ip"), kw.get("user_agent")
        row: AuditRow = (
            event,
            outcome,
            kw.get("user_id"),
            None if ip is None else str(ip),
            None if agent is None else str(agent),
        )
        async with self.engine.transaction() as tx:
            await record(tx, await transaction_now(tx), row)

    async def recent(self, limit: int = 100) -> list[AuditEvent]:
        rows = await self.engine.fetchall(
            "SELECT id, at, event, user_id, client_ip, user_agent, outcome FROM audit "
            "ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [AuditEvent(*tuple(r)) for r in rows]
