"""Signed-in sessions on PostgreSQL (see :mod:`resetd.storage.sessions`)."""

from __future__ import annotations

from ..sessions import SESSION_COLUMNS, Ended, SessionRow
from .engine import PostgresEngine, Transaction

ENDED = (
    "(remember = 0 AND (last_seen <= %s OR created_at <= %s)) "
    "OR (remember = 1 AND (last_seen <= %s OR created_at <= %s))"
)


async def end_all(tx: Transaction, user_id: int) -> None:
    await tx.execute("DELETE FROM sessions WHERE user_id = %s", (str(user_id),))


class PostgresSessions:
    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine

    async def create(
        self, row_id: str, user_id: str, remember: bool, now: float, purge: Ended | None
    ) -> None:
        async with self.engine.transaction() as tx:
            if purge is not None:
                await tx.execute(f"DELETE FROM sessions WHERE {ENDED}", tuple(purge))
            await tx.execute(
                "INSERT INTO sessions (id, user_id, remember, created_at, last_seen) "
                "VALUES (%s, %s, %s, %s, %s)",
                (row_id, user_id, int(remember), now, now),
            )

    async def get(self, row_id: str) -> SessionRow | None:
        row = await self.engine.fetchone(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = %s", (row_id,)
        )
        return SessionRow.of(row)

    async def delete(self, row_id: str) -> None:
        await self.engine.execute("DELETE FROM sessions WHERE id = %s", (row_id,))

    async def touch(self, row_id: str, now: float) -> None:
        await self.engine.execute(
            "UPDATE sessions SET last_seen = %s WHERE id = %s AND last_seen < %s",
            (now, row_id, now),
        )
