"""Rate-limit counters on SQLite (see :mod:`resetd.storage.limits`)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence

import aiosqlite

from ...db import Database
from ..limits import Counted, Hit, Taken, window_start


def hit_many(conn: sqlite3.Connection, hits: list[Hit], now: float) -> list[int | None]:
    """Count every hit on ``conn`` in one statement (a multi-row upsert, its keys
    in a fixed order), in a BatchWriter thread."""
    if not hits:
        return []
    keys = [(h.bucket, window_start(now, h.window)) for h in hits]
    added = Counter(keys)
    rows = sorted(added.items())
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


def take(conn: sqlite3.Connection, hits: Sequence[Hit], now: float) -> int | Taken:
    """:meth:`~resetd.storage.limits.LimitsStore.take`'s transaction, in the
    BatchWriter thread, so checking and counting are one transaction."""
    keys = [(h.bucket, window_start(now, h.window)) for h in hits]
    wait = 0
    for hit, (bucket, start) in zip(hits, keys, strict=True):
        row = conn.execute(
            "SELECT hits FROM rate_counters WHERE bucket = ? AND window_start = ?",
            (bucket, start),
        ).fetchone()
        if row is not None and int(row[0]) >= hit.limit:
            wait = max(wait, max(1, int(start + hit.window - now + 0.999)))
    if wait:
        return wait
    counts: list[int] = []
    for bucket, start in keys:
        (count,) = conn.execute(
            "INSERT INTO rate_counters (bucket, window_start, hits) VALUES (?, ?, 1) "
            "ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_counters.hits + 1 "
            "RETURNING hits",
            (bucket, start),
        ).fetchone()
        counts.append(int(count))
    filled = [count >= hit.limit for hit, count in zip(hits, counts, strict=True)]
    return Taken(keys, filled, counts)


def give_back(conn: sqlite3.Connection, counted: Sequence[Counted]) -> None:
    for bucket, start in counted:
        conn.execute(
            "UPDATE rate_counters SET hits = hits - 1 "
            "WHERE bucket = ? AND window_start = ? AND hits > 0",
            (bucket, start),
        )


async def forget(conn: aiosqlite.Connection, buckets: Sequence[str]) -> None:
    if buckets:
        marks = ", ".join("?" for _ in buckets)
        await conn.execute(f"DELETE FROM rate_counters WHERE bucket IN ({marks})", buckets)


class SqliteLimits:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def take(self, hits: Sequence[Hit]) -> int | Taken:
        return await self.db.writer.run(take, hits, await self.db.now())

    async def give_back(self, counted: Sequence[Counted]) -> None:
        await self.db.writer.run(give_back, counted)

    async def purge(self, now: float) -> int:
        return await self.db.execute(
            "DELETE FROM rate_counters WHERE window_start < ?", (int(now) - 86400 * 2,)
        )
