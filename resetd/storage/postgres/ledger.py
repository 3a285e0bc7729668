"""The token ledger on PostgreSQL (see :mod:`resetd.storage.ledger`).

A token is used once across every instance: :func:`consume` is one UPDATE
whose condition includes ``used_at IS NULL``. A second transaction consuming
the same token waits for the first's row lock and, once that commits, reads
the row again (READ COMMITTED re-checks the condition on the new version):
it finds the token used and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ..ledger import IssuedToken, LedgerEntry
from .engine import PostgresEngine, Transaction


async def consume(tx: Transaction, jti: str, now: float) -> bool:
    changed = await tx.execute(
        "UPDATE reset_tokens SET used_at = %s "
        "WHERE jti = %s AND used_at IS NULL AND burned_at IS NULL AND expires_at > %s",
        (now, jti, now),
    )
    return changed == 1


def record_many(conn: psycopg.Connection[Any], tokens: Sequence[IssuedToken]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO reset_tokens (jti, user_id, issued_at, expires_at) "
            "VALUES (%s, %s, %s, %s)",
            [(t.jti, str(t.user_id), t.issued_at, t.expires_at) for t in tokens],
        )


class PostgresLedger:
    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine

    async def entry(self, jti: str) -> LedgerEntry | None:
        row = await self.engine.fetchone(
            "SELECT expires_at, used_at, burned_at FROM reset_tokens WHERE jti = %s", (jti,)
        )
        return None if row is None else LedgerEntry(*tuple(row))

    async def record_failure(self, jti: str, limit: int, now: float) -> bool:
        async with self.engine.transaction() as tx:
            await tx.execute(
                "UPDATE reset_tokens SET failed_posts = failed_posts + 1 "
                "WHERE jti = %s AND used_at IS NULL AND burned_at IS NULL",
                (jti,),
            )
            burned = await tx.execute(
                "UPDATE reset_tokens SET burned_at = %s "
                "WHERE jti = %s AND burned_at IS NULL AND failed_posts >= %s",
                (now, jti, limit),
            )
            return burned == 1
