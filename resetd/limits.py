"""Fixed-window rate limits kept in SQLite, so they survive restarts and are
shared by every instance on the same database."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import dataclass

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
    def hit_many(conn: sqlite3.Connection, hits: list[Hit], now: float) -> list[int | None]:
        """Count every hit on ``conn`` in one statement (a multi-row upsert).

        Runs in a :class:`~resetd.db.BatchWriter` thread. Returns, in order, None
        for a hit within its limit, else the seconds until its window resets (for
        Retry-After). Hits over the limit are still counted.
        """
        if not hits:
            return []
        keys = [(h.bucket, int(now // h.window * h.window)) for h in hits]
        added = Counter(keys)
        rows = list(added.items())
        values = ", ".join("(?, ?, ?)" for _ in rows)
        cur = conn.execute(
            f"INSERT INTO rate_counters (bucket, window_start, hits) VALUES {values} "
            "ON CONFLICT (bucket, window_start) DO UPDATE "
            "SET hits = rate_counters.hits + excluded.hits RETURNING bucket, window_start, hits",
            [v for (b, w), n in rows for v in (b, w, n)],
        )
        totals = {(r[0], int(r[1])): int(r[2]) for r in cur.fetchall()}
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
