"""LISTEN on a connection of its own, reconnecting when it is lost.

NOTIFY wakes other instances at once (a queued reset request, a mail due);
each keeps a slow poll as well, because a notification sent while a listener
was reconnecting is gone. The listener therefore calls back once with None
after every reconnection: "you may have missed something, look".

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
    """One channel's LISTEN loop; :meth:`start` it, :meth:`stop` it."""

    def __init__(
        self, url: str, kwargs: dict[str, Any], channel: str, callback: ListenCallback
    ) -> None:
        self._url = url
        self._kwargs = kwargs
        self.channel = channel
        self._callback = callback
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.backend_pid: int | None = None  # the listening connection's server process
        self.reconnections = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen {self.channel}")

    async def wait_listening(self) -> None:
        """Return once LISTEN is in effect (again, after a reconnection)."""
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
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.backend_pid = conn.info.backend_pid
                    self._listening.set()
                    delay = RETRY_FIRST
                    if not first:
                        self.reconnections += 1
                        log.info("listening on %s again", self.channel)
                        self._deliver(None)
                    first = False
                    while True:
                        async for note in conn.notifies(timeout=PING_EVERY):
                            self._deliver(note.payload)
                        await conn.execute("SELECT 1")
                finally:
                    # Closed however the block ends: an autocommit connection has
                    # nothing to roll back, and a stop's cancellation must not leave
                    # it open (``async with`` rolls back first, which can be cut short).
                    await conn.close()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._listening.clear()
                self.backend_pid = None
                reason = " ".join(scrub(str(exc), self._url).split())
                log.warning(
                    "listening on %s at %s: connection lost (%s); again in %.1f s",
                    self.channel,
                    redacted_url(self._url),
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MOST)

    def _deliver(self, payload: str | None) -> None:
        try:
            self._callback(payload)
        except Exception:
            # A failing callback must not end the listening: the next
            # notification, and every other instance's, still has to arrive.
            log.exception("listener callback for %s failed", self.channel)
