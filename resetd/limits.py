"""Fixed-window rate limits kept in SQLite, so they survive restarts and are
shared by every instance on the same database."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import aiosqlite

from .db import Database


@dataclass(frozen=True)
class Hit:
    bucket: str
    limit: int
    window: int


class RateLimiter:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def hit_many(
        conn: aiosqlite.Connection, hits: list[Hit], now: float | None = None
    ) -> list[int | None]:
        """Count every hit in the caller's transaction, in a fixed number of statements.

        Returns, in order, None for a hit within its limit, else the seconds until
        its window resets (for Retry-After). Hits over the limit are still counted.
        """
        if not hits:
            return []
        now = time.time() if now is None else now
        keys = [(h.bucket, int(now // h.window * h.window)) for h in hits]
        added = Counter(keys)
        await conn.executemany(
            "INSERT INTO rate_counters (bucket, window_start, hits) VALUES (?, ?, ?) "
            "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_counters.hits + ?",
            [(b, w, n, n) for (b, w), n in added.items()],
        )
        buckets = sorted({b for b, _ in added})
        marks = ", ".join("?" for _ in buckets)
        async with conn.execute(
            f"SELECT bucket, window_start, hits FROM rate_counters WHERE bucket IN ({marks})",
            buckets,
        ) as cur:
            totals = {(r[0], int(r[1])): int(r[2]) for r in await cur.fetchall()}
        seen: Counter[tuple[str, int]] = Counter()
        verdicts: list[int | None] = []
        for hit, key in zip(hits, keys, strict=True):
            seen[key] += 1
            count = totals[key] - added[key] + seen[key]
            if count <= hit.limit:
                verdicts.append(None)
            else:
                verdicts.append(max(1, int(key[1] + hit.window - now + 0.999)))
        return verdicts

    async def purge(self, now: float | None = None) -> int:
        """Drop windows that ended more than a day ago."""
        now = time.time() if now is None else now
        return await self.db.execute(
            "DELETE FROM rate_counters WHERE window_start < ?", (int(now) - 86400 * 2,)
        )
