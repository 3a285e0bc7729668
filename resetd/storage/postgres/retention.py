"""Pruning old history on PostgreSQL (see :mod:`resetd.storage.retention`)."""

from __future__ import annotations

from .engine import PostgresEngine

# kind → (key column, condition on the cutoff, its one parameter)
OLD = {
    "outbox": ("id", "status = 'sent' AND sent_at < %s"),
    "reset_tokens": ("jti", "expires_at < %s"),
    "audit": ("id", "at < %s"),
}


class PostgresRetention:
    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine

    async def prune(self, kind: str, cutoff: float, limit: int) -> int:
        """SKIP LOCKED: instances pruning at once take different rows instead of
        waiting for each other's (and nobody waits for a row being written)."""
        key, old = OLD[kind]
        return await self.engine.execute(
            f"DELETE FROM {kind} WHERE {key} IN "
            f"(SELECT {key} FROM {kind} WHERE {old} LIMIT %s FOR UPDATE SKIP LOCKED)",
            (cutoff, limit),
        )
