"""Wake-ups between instances: a store tells a waiting worker that another
process queued work for it.

Within one process the app wakes its workers itself when it commits (the
intake wakes the request processor, a committed mail the outbox). What other
instances queue reaches a worker through :meth:`~resetd.storage.outbox.OutboxStore.watch`
and :meth:`~resetd.storage.requests.RequestStore.watch`, where the engine can
tell (LISTEN/NOTIFY on PostgreSQL). A wake-up only hastens the next look:
every worker still polls, so a wake-up lost on the way delays work, never
loses it.
"""

from __future__ import annotations

from typing import Protocol


class Watch(Protocol):
    """A worker's wake-ups from other processes, until stopped."""

    async def stop(self) -> None: ...


class PollOnly:
    """No wake-ups from other processes: they are found at the next poll (the
    SQLite storage's: processes sharing one file have no channel between them)."""

    async def stop(self) -> None:
        return None
