"""Batched writes: the SMTP handler queues, one task stores in batches.

The handler summarises each message (see ingest.prepare) and puts it on a
bounded queue (waiting only when it is full, or when the raw messages queued
add up to ``QUEUE_BYTES``, which is the backpressure), so ingest never waits
on SQLite unless it asks to (``until_stored``, for large messages). The
writer takes everything queued so far (up to ``batch_size``), stores it in one
transaction in a worker thread and then publishes the new messages to live
listeners.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from ..db import BatchWriter
from ..errors import NotStored
from .events import InboxEvents
from .ingest import Incoming, Prepared, prepare, store_batch, stored
from .store import InboxStore
from .summary import summarize

log = logging.getLogger(__name__)

# Larger messages are summarised in a worker thread rather than on the loop.
LOOP_SUMMARY_LIMIT = 256 * 1024
# Least time between the starts of two batch writes (seconds).
PACE = 0.1
# Raw bytes the queue may hold (a message larger than this waits for an empty
# queue): a thousand 1 MiB messages would otherwise all sit in memory.
QUEUE_BYTES = 32 * 1024 * 1024


class InboxWriter:
    def __init__(
        self,
        store: InboxStore,
        events: InboxEvents,
        batch_size: int = 500,
        # Backpressure: a full queue makes the SMTP handler wait. A second of mail at
        # full speed; more only held memory that Python does not give back.
        queue_size: int = 1000,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.store = store
        self.events = events
        self.batch_size = batch_size
        self.queue_bytes = queue_bytes
        self._queue: asyncio.Queue[Prepared | None] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._writer: BatchWriter | None = None
        self._queued_bytes = 0  # raw bytes submitted and not yet written
        self._room = asyncio.Condition()  # notified after each batch is written
        self._waiters: dict[int, asyncio.Future[None]] = {}  # id(Prepared) → stored

    async def start(self) -> None:
        self._writer = BatchWriter(self.store.db.path)
        self._task = asyncio.create_task(self._run(), name="inbox-writer")
        self._task.add_done_callback(self._fail_waiters)

    async def submit(self, item: Incoming, *, until_stored: bool = False) -> None:
        """Summarise one message and queue it for storage (waits while the queue is full).

        With ``until_stored``, return only once its batch has been written;
        raises NotStored if writing it failed or the writer ended first.
        """
        size = len(item.raw)
        if self._queued_bytes and self._queued_bytes + size > self.queue_bytes:
            async with self._room:
                await self._room.wait_for(
                    lambda: not self._queued_bytes or self._queued_bytes + size <= self.queue_bytes
                )
        self._queued_bytes += size
        try:
            if size > LOOP_SUMMARY_LIMIT:
                summary = await asyncio.to_thread(summarize, item.raw, item.rcpt_tos)
            else:
                summary = summarize(item.raw, item.rcpt_tos)
            ready = prepare(item, summary)
        except BaseException:
            self._queued_bytes -= size
            raise
        stored: asyncio.Future[None] | None = None
        if until_stored:
            if self._task is None or self._task.done():
                self._queued_bytes -= size
                raise NotStored
            stored = self._waiters[id(ready)] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(ready)
        except asyncio.QueueFull:
            try:
                await self._queue.put(ready)
            except BaseException:  # never queued: nothing will free its share
                self._queued_bytes -= size
                self._waiters.pop(id(ready), None)
                raise
        if stored is not None:
            await stored

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
                await self._written(batch)
                for _ in range(len(batch) + (1 if stopping else 0)):
                    self._queue.task_done()
            if stopping:
                return

    def _fail_waiters(self, task: asyncio.Task[None]) -> None:
        """The task ended: whoever still waits for a message to be stored never will."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(NotStored())
        self._waiters.clear()

    def _not_stored(self, batch: list[Prepared]) -> None:
        for p in batch:
            waiter = self._waiters.pop(id(p), None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(NotStored())

    async def _written(self, batch: list[Prepared]) -> None:
        """Free the batch's share of QUEUE_BYTES and wake whoever waits for it."""
        self._queued_bytes -= sum(len(p.incoming.raw) for p in batch)
        for p in batch:
            waiter = self._waiters.pop(id(p), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        async with self._room:
            self._room.notify_all()

    async def _write(self, batch: list[Prepared]) -> None:
        assert self._writer is not None, "InboxWriter.start() was not called"
        try:
            first_id, pruned = await self._writer.run(store_batch, batch, self.store.max_messages)
        except (sqlite3.Error, OSError):
            log.exception("could not store %d captured message(s)", len(batch))
            self._not_stored(batch)
            return
        if log.isEnabledFor(logging.INFO):
            _log_captured(first_id, batch)
        if not self.events.listening:
            return
        for message in stored(first_id, batch):
            self.events.publish("new", message.as_json())
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
