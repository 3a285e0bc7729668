"""LISTEN on a connection of its own, reconnecting when it is lost.

NOTIFY wakes other instances at once (a queued reset request, a mail due);
each keeps a slow poll as well, because a notification sent while a listener
was reconnecting is gone. The listener therefore calls back once with None
after every reconnection: "you may have missed something, look".

The same loop can hold a session-level advisory lock instead (or as well),
taken again after each reconnection: an instance's liveness lock
(:mod:`.liveness`) lasts exactly as long as a connection of its own.

Channel names are per schema: two apps sharing a database in schemas of their
own never wake each other (:func:`channel_name`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from ...db_url import redacted_url, scrub

log = logging.getLogger(__name__)

ListenCallback = Callable[[str | None], None]

# Seconds between checks that an idle listening connection is still alive
# (a peer that vanished without closing shows only when written to).
PING_EVERY = 30.0
RETRY_FIRST, RETRY_MOST = 0.1, 10.0


def channel_name(schema: str, channel: str) -> str:
    """The PostgreSQL channel for ``channel`` in ``schema`` (at most 63 bytes,
    PostgreSQL's limit for an identifier)."""
    name = f"{schema}.{channel}"
    if len(name.encode()) > 63:
        raise ValueError(f"channel name too long: {name!r}")
    return name


class Listener:
    """One channel's LISTEN loop, or one lock's holder; :meth:`start` it, :meth:`stop` it.

    With ``lock`` (the two keys of ``pg_try_advisory_lock``) the connection
    also takes that lock, at every (re)connection; :attr:`holds_lock` says
    whether it has it. A lock some other session holds is tried again at
    every ping.
    """

    def __init__(
        self,
        url: str,
        kwargs: dict[str, Any],
        channel: str | None,
        callback: ListenCallback,
        lock: tuple[int, int] | None = None,
        name: str | None = None,
    ) -> None:
        self._url = url
        self._kwargs = kwargs
        self.channel = channel
        self.lock = lock
        self._callback = callback
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.backend_pid: int | None = None  # the listening connection's server process
        self.holds_lock = False
        self.reconnections = 0
        # For the logs: "listening on {name}", "{name} is held by another session".
        self.name = name or channel or f"advisory lock {lock}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen {self.name}")

    async def wait_listening(self) -> None:
        """Return once LISTEN is in effect (again, after a reconnection), and the
        lock was tried."""
        await self._listening.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        delay = RETRY_FIRST
        first = True
        while True:
            try:
                conn = await AsyncConnection.connect(self._url, **self._kwargs)
                try:
                    if self.channel is not None:
                        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
                        await conn.execute(listen)
                    await self._try_lock(conn)
                    self.backend_pid = conn.info.backend_pid
                    self._listening.set()
                    delay = RETRY_FIRST
                    if not first:
                        self.reconnections += 1
                        log.info("listening on %s again", self.name)
                        self._deliver(None)
                    first = False
                    while True:
                        async for note in conn.notifies(timeout=PING_EVERY):
                            self._deliver(note.payload)
                        await conn.execute("SELECT 1")
                        if not self.holds_lock:
                            await self._try_lock(conn)
                finally:
                    # Closed however the block ends: an autocommit connection has
                    # nothing to roll back, and a stop's cancellation must not leave
                    # it open (``async with`` rolls back first, which can be cut short).
                    await conn.close()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._listening.clear()
                self.backend_pid = None
                self.holds_lock = False
                reason = " ".join(scrub(str(exc), self._url).split())
                log.warning(
                    "listening on %s at %s: connection lost (%s); again in %.1f s",
                    self.name,
                    redacted_url(self._url),
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MOST)

    async def _try_lock(self, conn: AsyncConnection[Any]) -> None:
        if self.lock is None:
            return
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s::int4, %s::int4)", self.lock)
        row = await cur.fetchone()
        self.holds_lock = bool(row and row[0])
        if not self.holds_lock:
            log.warning("%s is held by another session; again in %.0f s", self.name, PING_EVERY)

    def _deliver(self, payload: str | None) -> None:
        try:
            self._callback(payload)
        except Exception:
            # A failing callback must not end the listening: the next
            # notification, and every other instance's, still has to arrive.
            log.exception("listener callback for %s failed", self.name)
