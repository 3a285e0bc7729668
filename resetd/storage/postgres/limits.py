"""Rate-limit counters on PostgreSQL (see :mod:`resetd.storage.limits`).

Exact across instances: every count is one upsert (``INSERT … ON CONFLICT DO
UPDATE … RETURNING hits``), which takes the counter's row lock and returns
the total including every hit committed before it; a concurrent upsert of the
same counter waits for that lock and adds to the new total. Each statement
locks its counters in one order (sorted by bucket and window), so two
instances counting the same keys listed in different orders wait for each
other instead of deadlocking. Windows start by the database's clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg

from ..limits import Counted, Hit, Taken, window_start
from .clock import transaction_now
from .engine import PostgresEngine, Transaction

Key = tuple[str, int]

_UPSERT = (
    "INSERT INTO rate_counters (bucket, window_start, hits) "
    "SELECT bucket, window_start, hits "
    "FROM unnest(%s::text[], %s::bigint[], %s::int[]) WITH ORDINALITY "
    "AS v(bucket, window_start, hits, n) ORDER BY n "
    "ON CONFLICT (bucket, window_start) DO UPDATE "
    "SET hits = rate_counters.hits + excluded.hits RETURNING bucket, window_start, hits"
)


def _upsert_params(added: Counter[Key]) -> tuple[list[str], list[int], list[int]]:
    """The upsert's three arrays, in the fixed (sorted) key order."""
    rows = sorted(added.items())
    return [b for (b, _), _ in rows], [w for (_, w), _ in rows], [n for _, n in rows]


def _retry_after(start: int, window: int, now: float) -> int:
    return max(1, int(start + window - now + 0.999))


def hit_many(conn: psycopg.Connection[Any], hits: list[Hit], now: float) -> list[int | None]:
    """Count every hit on ``conn`` in one statement (a multi-row upsert, its keys
    in a fixed order), in a batch's thread."""
    if not hits:
        return []
    keys = [(h.bucket, window_start(now, h.window)) for h in hits]
    added = Counter(keys)
    rows = conn.execute(_UPSERT, _upsert_params(added)).fetchall()
    totals = {(r[0], int(r[1])): int(r[2]) for r in rows}
    seen: Counter[Key] = Counter()
    verdicts: list[int | None] = []
    for hit, key in zip(hits, keys, strict=True):
        seen[key] += 1
        count = totals[key] - added[key] + seen[key]
        verdicts.append(None if count <= hit.limit else _retry_after(key[1], hit.window, now))
    return verdicts


class _Full(Exception):
    """A bucket was full: the take's transaction rolls back, counting nowhere."""

    def __init__(self, wait: int) -> None:
        super().__init__(wait)
        self.wait = wait


async def _take(tx: Transaction, hits: Sequence[Hit]) -> Taken:
    """Count first, then look: the upsert's totals are exact (each row locked
    until commit), so a hit whose bucket held ``limit`` or more before it
    raises :class:`_Full` and the whole transaction rolls back."""
    now = await transaction_now(tx)
    keys = [(h.bucket, window_start(now, h.window)) for h in hits]
    added = Counter(keys)
    rows = await tx.fetchall(_UPSERT, _upsert_params(added))
    totals = {(r[0], int(r[1])): int(r[2]) for r in rows}
    seen: Counter[Key] = Counter()
    wait = 0
    counts: list[int] = []
    for hit, key in zip(hits, keys, strict=True):
        before = totals[key] - added[key]
        if before >= hit.limit:
            wait = max(wait, _retry_after(key[1], hit.window, now))
        seen[key] += 1
        counts.append(before + seen[key])
    if wait:
        raise _Full(wait)
    filled = [count >= hit.limit for hit, count in zip(hits, counts, strict=True)]
    return Taken(keys, filled, counts)


async def forget(tx: Transaction, buckets: Sequence[str]) -> None:
    """Drop every window of ``buckets``, locking their rows in the counters'
    order first, as every other writer of them does."""
    if buckets:
        await tx.execute(
            "SELECT 1 FROM rate_counters WHERE bucket = ANY(%s) "
            "ORDER BY bucket, window_start FOR UPDATE",
            (list(buckets),),
        )
        await tx.execute("DELETE FROM rate_counters WHERE bucket = ANY(%s)", (list(buckets),))


class PostgresLimits:
    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine

    async def take(self, hits: Sequence[Hit]) -> int | Taken:
        if not hits:
            return Taken([], [], [])

        async def unit(tx: Transaction) -> Taken:
            return await _take(tx, hits)

        try:
            return await self.engine.run(unit, isolation="read committed")
        except _Full as full:
            return full.wait

    async def give_back(self, counted: Sequence[Counted]) -> None:
        if not counted:
            return
        async with self.engine.transaction() as tx:
            # Key by key in the counters' order; never below zero.
            for (bucket, start), n in sorted(Counter(counted).items()):
                await tx.execute(
                    "UPDATE rate_counters SET hits = greatest(hits - %s, 0) "
                    "WHERE bucket = %s AND window_start = %s",
                    (n, bucket, start),
                )

    async def purge(self, now: float) -> int:
        return await self.engine.execute(
            "DELETE FROM rate_counters WHERE window_start < %s", (int(now) - 86400 * 2,)
        )
