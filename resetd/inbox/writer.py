"""Batched writes: the SMTP handler queues, one task parses and stores in batches.

The handler only puts the received bytes on a bounded queue (waiting only
when it is full, which is the backpressure), so ingest never waits on SQLite.
The writer takes everything queued so far (up to ``batch_size``), parses it in
a worker thread (CPU work off the loop), stores it in one transaction and then
publishes the new messages to live listeners.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from .events import InboxEvents
from .ingest import Incoming, connect, store_batch
from .store import InboxStore

log = logging.getLogger(__name__)


class InboxWriter:
    def __init__(
        self,
        store: InboxStore,
        events: InboxEvents,
        batch_size: int = 500,
        queue_size: int = 5000,
    ) -> None:
        self.store = store
        self.events = events
        self.batch_size = batch_size
        self._queue: asyncio.Queue[Incoming | None] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        self._conn = connect(self.store.db.path)
        self._task = asyncio.create_task(self._run(), name="inbox-writer")

    async def submit(self, item: Incoming) -> None:
        """Queue one message for storage (waits only while the queue is full)."""
        await self._queue.put(item)

    async def flush(self) -> None:
        """Return once everything queued so far is stored (tests, long-polls)."""
        await self._queue.join()

    async def stop(self) -> None:
        """Store what is queued, then end the task."""
        if self._task is None:
            return
        await self._queue.put(None)
        await self._task
        self._task = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch: list[Incoming] = []
            stopping = first is None
            if first is not None:
                batch.append(first)
            while not stopping and len(batch) < self.batch_size and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            try:
                if batch:
                    await self._write(batch)
            finally:
                for _ in range(len(batch) + (1 if stopping else 0)):
                    self._queue.task_done()
            if stopping:
                return

    async def _write(self, batch: list[Incoming]) -> None:
        assert self._conn is not None, "InboxWriter.start() was not called"
        try:
            stored, pruned = await asyncio.to_thread(
                store_batch, self._conn, batch, self.store.max_messages
            )
        except (sqlite3.Error, OSError):
            log.exception("could not store %d captured message(s)", len(batch))
            return
        if not self.events.listening:
            return
        for message in stored:
            self.events.publish("new", message.as_json())
        total, unread = await self.store.counts()
        self.events.publish("stats", {"total": total, "unread": unread, "pruned": pruned})
