"""Batched writes: the SMTP handler queues, one task stores in batches.

The handler digests each message (see parser.py) and puts it on a
bounded queue (waiting only when it is full, which is the backpressure), so
ingest never waits on SQLite. The writer takes everything queued so far (up
to ``batch_size``), stores it in one transaction in a worker thread and then
publishes the new messages to live listeners.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from ..db import BatchWriter
from .events import InboxEvents
from .ingest import Incoming, Prepared, prepare, store_batch, stored
from .parser import ParserProcess
from .store import InboxStore

log = logging.getLogger(__name__)

# Least time between the starts of two batch writes (seconds).
PACE = 0.1


class InboxWriter:
    def __init__(
        self,
        store: InboxStore,
        events: InboxEvents,
        parser: ParserProcess,
        batch_size: int = 500,
        # Backpressure: a full queue makes the SMTP handler wait. A second of mail at
        # full speed; more only held memory that Python does not give back.
        queue_size: int = 1000,
    ) -> None:
        self.store = store
        self.events = events
        self.parser = parser
        self.batch_size = batch_size
        self._queue: asyncio.Queue[Prepared | None] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._writer: BatchWriter | None = None

    async def start(self) -> None:
        self._writer = BatchWriter(self.store.db.path)
        self._task = asyncio.create_task(self._run(), name="inbox-writer")

    async def submit(self, item: Incoming) -> None:
        """Digest one message and queue it for storage (waits while the queue is full)."""
        ready = prepare(item, await self.parser.digest(item.raw, item.rcpt_tos))
        try:
            self._queue.put_nowait(ready)
        except asyncio.QueueFull:
            await self._queue.put(ready)

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
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_write = -PACE
        while True:
            first = await self._queue.get()
            # Under a stream of mail, gather until PACE after the previous write
            # began: a transaction per handful of messages cost twice the CPU per
            # message of one per hundred. A lone message waits for nothing, and
            # 100 ms is below what anyone watching the inbox notices.
            wait = last_write + PACE - loop.time()
            if wait > 0 and first is not None and self._queue.qsize() < self.batch_size:
                await asyncio.sleep(wait)
            last_write = loop.time()
            batch: list[Prepared] = []
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

    async def _write(self, batch: list[Prepared]) -> None:
        assert self._writer is not None, "InboxWriter.start() was not called"
        try:
            first_id, pruned = await self._writer.run(store_batch, batch, self.store.max_messages)
        except (sqlite3.Error, OSError):
            log.exception("could not store %d captured message(s)", len(batch))
            return
        if log.isEnabledFor(logging.INFO):
            _log_captured(first_id, batch)
        if not self.events.listening:
            return
        for message in stored(first_id, batch):
            # "More": recipients beyond the summary's, for the live list's "and N more".
            self.events.publish("new", {**message.as_json(), "More": message.more_people})
        total, unread = await self.store.counts()
        self.events.publish("stats", {"total": total, "unread": unread, "pruned": pruned})


# A batch larger than this is logged as one line, not a line per message.
LOG_EACH_UP_TO = 5


def _log_captured(first_id: int, batch: list[Prepared]) -> None:
    last_id = first_id + len(batch) - 1
    if len(batch) > LOG_EACH_UP_TO:
        log.info("dev inbox: captured %d messages (#%d-#%d)", len(batch), first_id, last_id)
        return
    for n, p in enumerate(batch):
        rcpts = p.incoming.rcpt_tos
        to = ", ".join(rcpts[:3]) + (f" and {len(rcpts) - 3} more" if len(rcpts) > 3 else "")
        # %r: quoted, with any control characters in the subject escaped.
        log.info(
            "dev inbox: captured #%d %r from %s to %s",
            first_id + n,
            p.summary.subject,
            p.incoming.mail_from or "<>",
            to,
        )
