"""Pruning old history on SQLite (see :mod:`resetd.storage.retention`)."""

from __future__ import annotations

from ...db import Database

# kind → (key column, condition on the cutoff, its one parameter)
OLD = {
    "outbox": ("id", "status = 'sent' AND sent_at < ?"),
    "reset_tokens": ("jti", "expires_at < ?"),
    "audit": ("id", "at < ?"),
}


class SqliteRetention:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def prune(self, kind: str, cutoff: float, limit: int) -> int:
        key, old = OLD[kind]
        return await self.db.execute(
            f"DELETE FROM {kind} WHERE {key} IN (SELECT {key} FROM {kind} WHERE {old} LIMIT ?)",
            (cutoff, limit),
        )
