"""Fixed-window rate limits kept in SQLite, so they survive restarts and are
shared by every instance on the same database."""

from __future__ import annotations

import ipaddress
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from .db import Database

# A counted hit: (bucket, window_start), so it can be given back in its own window.
Counted = tuple[str, int]


@dataclass(frozen=True)
class Taken:
    """What :meth:`RateLimiter.take` counted, and which hits filled their bucket."""

    counted: list[Counted]
    filled: list[bool]
    # Hits in each bucket's window, this one included.
    counts: list[int]


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
        keys = [(h.bucket, _window_start(now, h.window)) for h in hits]
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

    @staticmethod
    def take(conn: sqlite3.Connection, hits: Sequence[Hit], now: float) -> int | Taken:
        """All or nothing: count one hit in every bucket if each is under its limit.

        Runs in a :class:`~resetd.db.BatchWriter` thread, so checking and counting
        are one transaction and concurrent attempts cannot all slip under a limit.
        Returns what was counted (for :meth:`give_back`), or, when a bucket is full,
        the seconds until every full bucket's window ends (for Retry-After); a
        refused attempt counts nowhere.
        """
        keys = [(h.bucket, _window_start(now, h.window)) for h in hits]
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

    @staticmethod
    def give_back(conn: sqlite3.Connection, counted: Sequence[Counted]) -> None:
        """Uncount hits that :meth:`take` counted (the attempt turned out fine)."""
        for bucket, start in counted:
            conn.execute(
                "UPDATE rate_counters SET hits = hits - 1 "
                "WHERE bucket = ? AND window_start = ? AND hits > 0",
                (bucket, start),
            )

    @staticmethod
    async def forget(conn: aiosqlite.Connection, buckets: Sequence[str]) -> None:
        """Drop every window of ``buckets``, inside the caller's transaction."""
        if buckets:
            marks = ", ".join("?" for _ in buckets)
            await conn.execute(f"DELETE FROM rate_counters WHERE bucket IN ({marks})", buckets)

    async def purge(self, now: float | None = None) -> int:
        """Drop windows that ended more than a day ago."""
        now = time.time() if now is None else now
        return await self.db.execute(
            "DELETE FROM rate_counters WHERE window_start < ?", (int(now) - 86400 * 2,)
        )


def _window_start(now: float, window: int) -> int:
    return int(now // window * window)


def client_bucket(ip: str) -> str:
    """The key a client is limited by: its IPv4 address, or its IPv6 /64.

    One IPv6 subscriber is usually given a whole /64, so counting single
    addresses would hand each client 2**64 fresh budgets.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)
