"""Which queued reset requests this instance is working on, so that another
instance reading the queue meanwhile passes them by.

The processor reads a batch of requests, looks up their accounts and renders
their mails, and only then claims them in one transaction (see
:mod:`resetd.reset.processor`). Without more, two instances reading the queue
at once would both look up and render the same requests, one of them for
nothing. While a processor watches the queue, each read therefore reserves
what it returns: a session-level advisory lock per request, on a connection
of the reader's own, and a read passes by the requests other instances hold.

A reservation lasts until the same processor reads again (by then the batch
before is claimed, or failed and read again) or stops, and goes with the
connection: an instance that dies holds nothing. A reservation only spares
work: the claim (``FOR UPDATE SKIP LOCKED``) is what makes each request
mailed once, whatever happens here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from .engine import PostgresEngine, connection_kwargs

log = logging.getLogger(__name__)

# In pg_stat_activity: whose connection this is, and what it holds.
APPLICATION_NAME = "resetd reservations"
# How far past the oldest pending request a read looks for ones nobody holds:
# room for this many instances' batches.
WINDOW = 8

# Advisory locks are per database: the key names this schema's table, and the
# request's id (its low 31 bits: a rare clash only passes a request by once).
_RESERVE = (
    "WITH candidate AS MATERIALIZED (SELECT id, email_norm, client_ip, user_agent, limited,"
    " email, lang FROM reset_requests WHERE done_at IS NULL ORDER BY id LIMIT %s) "
    # No ORDER BY here: the LIMIT stops taking locks once it has enough rows.
    "SELECT * FROM candidate WHERE pg_try_advisory_lock("
    "hashtext(current_schema() || '.reset_requests'), (id & 2147483647)::int) LIMIT %s"
)
# The read above sees the queue as it was when it began; a request another
# instance claimed and then let go of meanwhile is locked all the same. A second
# statement (a snapshot of its own: the connection is in autocommit) sees every
# claim committed before its lock was given up, and those are let go again.
_STILL_PENDING = "SELECT id FROM reset_requests WHERE id = ANY(%s) AND done_at IS NULL"
_UNLOCK = (
    "SELECT pg_advisory_unlock(hashtext(current_schema() || '.reset_requests'),"
    " (id & 2147483647)::int) FROM unnest(%s::bigint[]) AS id"
)


class Reservations:
    """The reserving reads of one instance's processor, on a connection of its own."""

    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine
        self._conn: AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()  # one read at a time on the connection

    async def read(self, limit: int) -> list[tuple[Any, ...]] | None:
        """Up to ``limit`` pending requests, oldest first, that no other instance
        holds, reserved until the next read; those of the last read are given
        up first. None when the connection cannot be had: the caller reads
        without reserving (the claim keeps it exact)."""
        async with self._lock:
            try:
                conn = await self._connection()
                await conn.execute("SELECT pg_advisory_unlock_all()")
                cur = await conn.execute(_RESERVE, (limit * WINDOW, limit))
                rows = await cur.fetchall()
                if rows:
                    ids = [int(r[0]) for r in rows]
                    cur = await conn.execute(_STILL_PENDING, (ids,))
                    pending = {int(r[0]) for r in await cur.fetchall()}
                    if len(pending) < len(ids):
                        await conn.execute(_UNLOCK, ([i for i in ids if i not in pending],))
                        rows = [r for r in rows if int(r[0]) in pending]
            except psycopg.Error as exc:
                log.warning("reset requests: reading without reserving: %s", type(exc).__name__)
                await self._drop()
                return None
            except BaseException:
                # Cut short (the processor stops): the connection is mid-statement,
                # so it is closed, which gives up its locks too, never left open.
                await self._drop(unlock=False)
                raise
        return sorted(rows, key=lambda r: int(r[0]))

    async def close(self) -> None:
        """Give up every reservation (the processor stops)."""
        async with self._lock:
            await self._drop()

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            url = self.engine.url
            kwargs = connection_kwargs(url, APPLICATION_NAME)
            conn = await AsyncConnection.connect(url, **kwargs)
            try:
                await conn.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(self.engine.schema))
                )
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _drop(self, unlock: bool = True) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            if unlock:
                # Given up now, not once the server notices the closed connection
                # (a moment later): another instance's next read finds them free.
                await conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            pass  # a connection that broke holds no locks either
        finally:
            await conn.close()
