"""Wake-ups between instances on PostgreSQL: NOTIFY when work is queued, LISTEN
for it (see :mod:`resetd.storage.wakeups`).

A store notifies its channel inside the transaction that queues the work, so
the notification goes out when that commits and never for a rollback. The
payload names the kind of work (the outbox's ``mail`` or ``webhook``). Each
store listens on one connection of its own however many workers wait on it,
and started by the first watch, it stops with the last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from .engine import PostgresEngine
from .listen import Listener

Wake = Callable[[], None]


def notify_sync(conn: psycopg.Connection[Any], channel: str, payload: str = "") -> None:
    """Wake the watchers of ``channel`` when the batch's transaction on
    ``conn`` commits (:func:`.engine.notify` does it in a Transaction)."""
    # The channel as listen.channel_name makes it: the schema the connection's
    # search_path puts first, which is the engine's ``[database] schema``.
    conn.execute("SELECT pg_notify(current_schema() || '.' || %s, %s)", (channel, payload))


class Wakeups:
    """The watchers of one channel, woken by its notifications."""

    def __init__(self, engine: PostgresEngine, channel: str) -> None:
        self.engine = engine
        self.channel = channel
        self._watchers: list[Watching] = []
        self._listener: Listener | None = None

    def watch(self, wake: Wake, topic: str | None = None) -> Watching:
        """Call ``wake()`` for each notification whose payload is ``topic``
        (any, when None), and after the listening connection was lost and
        made again (what was sent meanwhile is gone)."""
        watching = Watching(self, wake, topic)
        self._watchers.append(watching)
        if self._listener is None:
            self._listener = self.engine.listen(self.channel, self._heard)
        return watching

    def _heard(self, payload: str | None) -> None:
        for w in list(self._watchers):
            if payload is None or w.topic is None or w.topic == payload:
                w.wake()

    async def _stop(self, watching: Watching) -> None:
        if watching in self._watchers:
            self._watchers.remove(watching)
        if not self._watchers and self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stop()

    async def _listening(self) -> None:
        if self._listener is not None:
            await self._listener.wait_listening()


class Watching:
    """One worker's watch (:class:`resetd.storage.wakeups.Watch`)."""

    def __init__(self, wakeups: Wakeups, wake: Wake, topic: str | None) -> None:
        self._wakeups = wakeups
        self.wake = wake
        self.topic = topic

    async def listening(self) -> None:
        """Return once notifications reach this watch (LISTEN is in effect)."""
        await self._wakeups._listening()

    async def stop(self) -> None:
        await self._wakeups._stop(self)
