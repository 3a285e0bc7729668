"""Fixed-window rate limits kept in SQLite, so they survive restarts and are
shared by every instance on the same database."""

from __future__ import annotations

import time

import aiosqlite

from .db import Database


class RateLimiter:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def hit(
        conn: aiosqlite.Connection, bucket: str, limit: int, window: int, now: float | None = None
    ) -> int | None:
        """Count one hit in the caller's transaction.

        Returns None while within ``limit``, else the seconds until the window
        resets (for Retry-After). Hits over the limit are still counted.
        """
        now = time.time() if now is None else now
        start = int(now // window * window)
        async with conn.execute(
            "INSERT INTO rate_counters (bucket, window_start, hits) VALUES (?, ?, 1) "
            "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_counters.hits + 1 "
            "RETURNING hits",
            (bucket, start),
        ) as cur:
            row = await cur.fetchone()
        hits = int(row[0]) if row else 1
        if hits <= limit:
            return None
        return max(1, int(start + window - now + 0.999))

    async def purge(self, now: float | None = None) -> int:
        """Drop windows that ended more than a day ago."""
        now = time.time() if now is None else now
        return await self.db.execute(
            "DELETE FROM rate_counters WHERE window_start < ?", (int(now) - 86400 * 2,)
        )
