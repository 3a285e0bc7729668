"""The reset-request queue on PostgreSQL (see :mod:`resetd.storage.requests`),
shared by every instance on the database.

A request is claimed by one instance only: :func:`claim` locks the rows it
marks done ``FOR UPDATE SKIP LOCKED``, so a request another instance is
claiming at that moment is left to it, without waiting for its transaction.
Queuing requests notifies channel ``reset_requests``, which wakes every
instance's processor (:meth:`PostgresRequests.watch`). While a processor
watches, what it reads is reserved for it (:mod:`.reservations`), so that
each request is looked up and rendered by one instance only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ..requests import FAILED_KEPT, FailedRequest, NewRequest, QueuedRequest
from .engine import PostgresEngine
from .reservations import Reservations
from .wakeups import Wake, Wakeups, Watching, notify_sync

CHANNEL = "reset_requests"


def add_many(conn: psycopg.Connection[Any], rows: Sequence[NewRequest], now: float) -> None:
    """Queue the requests in the caller's transaction, created at ``now``; every
    instance's processor is woken when it commits."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO reset_requests (email_norm, email, client_ip, user_agent, created_at,"
            " limited, lang) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(n, e, ip, ua, now, int(limited), lang) for n, e, ip, ua, limited, lang in rows],
        )
    notify_sync(conn, CHANNEL)


def claim(conn: psycopg.Connection[Any], ids: list[int], now: float) -> set[int]:
    """Mark the requests ``ids`` done at ``now``; returns those this call marked.
    Requests done already, or locked by another instance's claim (which will
    mark them, or leave them pending if it rolls back), are not among them."""
    if not ids:
        return set()
    rows = conn.execute(
        "WITH free AS (SELECT id FROM reset_requests WHERE id = ANY(%s) AND done_at IS NULL "
        "ORDER BY id FOR UPDATE SKIP LOCKED) "
        "UPDATE reset_requests SET done_at = %s FROM free WHERE reset_requests.id = free.id "
        "RETURNING reset_requests.id",
        (ids, now),
    ).fetchall()
    return {int(r[0]) for r in rows}


def record_failures(conn: psycopg.Connection[Any], failures: Sequence[tuple[int, str]]) -> None:
    """Note why each claimed request (id, failure) was set aside."""
    if not failures:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE reset_requests SET failure = substr(%s::text, 1, 500) WHERE id = %s",
            [(why, request_id) for request_id, why in failures],
        )


class PostgresRequests:
    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine
        self._wakeups = Wakeups(engine, CHANNEL)
        self._watches: list[ProcessorWatch] = []
        self._reservations: Reservations | None = None  # while a processor watches

    async def pending(self, limit: int) -> list[QueuedRequest]:
        """The oldest ``limit`` requests not yet done; while a processor watches,
        those no other instance's processor holds, reserved for this one until
        its next read (a read only, all the same: claiming is separate)."""
        rows: list[Any] | None = None
        if self._reservations is not None:
            rows = await self._reservations.read(limit)
        if rows is None:
            rows = await self.engine.fetchall(
                "SELECT id, email_norm, client_ip, user_agent, limited, email, lang"
                " FROM reset_requests WHERE done_at IS NULL ORDER BY id LIMIT %s",
                (limit,),
            )
        return [QueuedRequest(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6] or "en") for r in rows]

    async def failed(self, since: float) -> list[FailedRequest]:
        rows = await self.engine.fetchall(
            "SELECT id, created_at, done_at, failure FROM reset_requests"
            " WHERE failure IS NOT NULL AND done_at >= %s ORDER BY id",
            (since,),
        )
        return [FailedRequest(r[0], r[1], r[2], r[3]) for r in rows]

    async def purge(self, older_than: float) -> int:
        return await self.engine.execute(
            "DELETE FROM reset_requests WHERE done_at < %s"
            " AND (failure IS NULL OR done_at < %s - %s)",
            (older_than, older_than, FAILED_KEPT),
        )

    def watch(self, wake: Wake) -> ProcessorWatch:
        """Call ``wake()`` when any instance queued requests (LISTEN on one
        connection of this store's) and whenever that connection was lost and
        made again; until the watch stops, :meth:`pending` reserves what it reads."""
        if self._reservations is None:
            self._reservations = Reservations(self.engine)
        watch = ProcessorWatch(self, self._wakeups.watch(wake))
        self._watches.append(watch)
        return watch

    async def _unwatch(self, watch: ProcessorWatch) -> None:
        if watch in self._watches:
            self._watches.remove(watch)
        if not self._watches and self._reservations is not None:
            reservations, self._reservations = self._reservations, None
            await reservations.close()


class ProcessorWatch:
    """A processor's watch of the queue: its wake-ups and its reservations."""

    def __init__(self, store: PostgresRequests, watching: Watching) -> None:
        self._store = store
        self._watching = watching

    async def listening(self) -> None:
        """Return once notifications reach this watch (LISTEN is in effect)."""
        await self._watching.listening()

    async def stop(self) -> None:
        await self._watching.stop()
        await self._store._unwatch(self)
