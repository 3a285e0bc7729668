"""Batched writes: the SMTP handler queues, one task stores in batches.

The handler digests each message (see parser.py) and puts it on a bounded
queue (waiting only when it is full, or when the raw messages queued add up
to ``queue_bytes``, which is the backpressure), so ingest never waits on
SQLite unless it asks to (``until_stored``, for large spooled messages). The
writer takes everything queued so far (up to ``batch_size``), stores it in
one transaction in a worker thread and then publishes the new messages to
live listeners.

No mail may stop the writer. A batch that fails is stored again one message
at a time; a message that still fails is stored as its raw source with the
error as its parse problem. When nothing can be stored (a locked or broken
database, a full disk), mail already answered 250 is held and tried again
every RETRY_DELAY seconds, and new mail waits for its own write and is
answered by its outcome: 451 (:class:`~resetd.errors.NotStored`) while storing
fails, so the client keeps it, 250 again as soon as storing works.
:meth:`InboxWriter.stop` ends within STOP_TIMEOUT seconds whatever the queue
holds; what it could not store is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..db import BatchWriter
from ..errors import NotStored
from .digest import Digest, describe, unparsed_digest
from .events import InboxEvents
from .ingest import Incoming, Prepared, prepare, store_batch, stored
from .parser import ParserProcess
from .store import InboxStore
from .summary import Summary

log = logging.getLogger(__name__)

# Least time between the starts of two batch writes (seconds).
PACE = 0.1
# How long a mail may wait for room in a full queue, or for its own write
# while storing fails, before the answer is 451.
QUEUE_WAIT = 30.0
# The longest stop() takes; what is still queued then is dropped, and logged.
STOP_TIMEOUT = 5.0
# While storing fails, how often mail already answered 250 is tried again.
RETRY_DELAY = 1.0
# Raw bytes the queue may hold (a message larger than this waits for an empty
# queue): a thousand 1 MiB messages would otherwise all sit in memory.
QUEUE_BYTES = 32 * 1024 * 1024


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
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.store = store
        self.events = events
        self.parser = parser
        self.batch_size = batch_size
        self.queue_bytes = queue_bytes
        self._queued_bytes = 0  # raw bytes submitted and not yet written
        self._room = asyncio.Condition()  # notified after each batch is written
        self._closed = False  # stop() was called
        self._queue: asyncio.Queue[Prepared | None] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._writer: BatchWriter | None = None
        self._failing = False  # the last attempt to store anything failed
        self._held: list[Prepared] = []  # answered 250, not yet stored (storing failed)
        self._waiters: dict[int, asyncio.Future[bool]] = {}  # id(Prepared) → stored?

    async def start(self) -> None:
        self._writer = BatchWriter(self.store.db.path)
        self._task = asyncio.create_task(self._run(), name="inbox-writer")
        self._task.add_done_callback(lambda _: self._fail_waiters())

    def _check(self) -> None:
        if self._closed or (self._task is not None and self._task.done()):
            raise NotStored("the inbox writer is not running")

    async def submit(self, item: Incoming, *, until_stored: bool = False) -> None:
        """Digest one message and queue it for storage (waits while the queue is full).

        With ``until_stored``, return only once it is stored. Raises NotStored
        when the writer is not running, when the queue stays full for
        QUEUE_WAIT seconds, or when storing fails and this message could not be
        stored either.
        """
        self._check()
        size = len(item.raw)
        if not self._has_room(size):  # the common case needs no timer
            try:
                async with asyncio.timeout(QUEUE_WAIT):
                    await self._wait_for_room(size)
            except TimeoutError:
                raise NotStored("the inbox is not storing mail") from None
        self._queued_bytes += size
        queued = False
        try:
            try:
                ready = prepare(item, await self.parser.digest(item.raw, item.rcpt_tos))
            except Exception as exc:  # a flaw this mail found in our reading: store it raw
                log.exception("dev inbox: could not digest a captured message; storing it raw")
                ready = prepare(item, unparsed_digest(item.raw, item.rcpt_tos, describe(exc)))
            self._check()
            if not until_stored and not self._failing and not self._queue.full():
                self._queue.put_nowait(ready)  # the common case, without a timer
                queued = True
                return
            waiter: asyncio.Future[bool] | None = None
            if until_stored or self._failing:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters[id(ready)] = waiter
            try:
                async with asyncio.timeout(QUEUE_WAIT):
                    await self._queue.put(ready)
                    queued = True
                if waiter is not None and not await waiter:
                    raise NotStored("the inbox could not store the message")
            except TimeoutError:
                raise NotStored("the inbox is not storing mail") from None
            finally:
                if waiter is not None:
                    self._waiters.pop(id(ready), None)
        finally:
            if not queued:  # never queued: nothing else will free its share
                self._queued_bytes -= size

    def _has_room(self, size: int) -> bool:
        return not self._queued_bytes or self._queued_bytes + size <= self.queue_bytes

    async def _wait_for_room(self, size: int) -> None:
        if self._has_room(size):
            return
        async with self._room:
            await self._room.wait_for(lambda: self._has_room(size))

    async def flush(self) -> None:
        """Return once everything queued so far is stored or given up (tests, long-polls)."""
        task = self._task
        if task is None or task.done():
            return
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait({joined, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()

    async def stop(self) -> None:
        """Store what is queued, then end the task; never longer than STOP_TIMEOUT."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        try:
            if not task.done():
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._queue.put(None)
                    await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            lost = self._queue.qsize() + len(self._held)
            log.error("dev inbox: stopped with %d captured message(s) not stored", lost)
        self._fail_waiters()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                await asyncio.wait_for(writer.close(), max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                log.error("dev inbox: the database thread did not finish in time")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_write = -PACE
        stopping = False
        while not stopping:
            taken: list[Prepared | None] = []
            if not self._held:
                taken.append(await self._queue.get())
            else:  # storing failed: try the held mail again, sooner when more arrives
                with contextlib.suppress(TimeoutError):
                    taken.append(await asyncio.wait_for(self._queue.get(), RETRY_DELAY))
            # Under a stream of mail, gather until PACE after the previous write
            # began: a transaction per handful of messages cost twice the CPU per
            # message of one per hundred. A lone message waits for nothing, and
            # 100 ms is below what anyone watching the inbox notices.
            wait = last_write + PACE - loop.time()
            if wait > 0 and None not in taken and self._queue.qsize() < self.batch_size:
                await asyncio.sleep(wait)
            last_write = loop.time()
            while None not in taken and len(taken) < self.batch_size and not self._queue.empty():
                taken.append(self._queue.get_nowait())
            stopping = None in taken
            batch, self._held = self._held + [p for p in taken if p is not None], []
            try:
                if batch:
                    await self._write(batch)
            except Exception:  # the writer outlives any one batch; see the docstring
                log.exception("dev inbox: storing %d captured message(s) failed", len(batch))
            finally:
                await self._written([p for p in taken if p is not None])
                for _ in taken:
                    self._queue.task_done()
        if self._held:
            log.error("dev inbox: stopped with %d captured message(s) not stored", len(self._held))

    async def _write(self, batch: list[Prepared]) -> None:
        """Store ``batch``: what fails is tried alone, then stored raw; when nothing can
        be stored, mail already answered 250 is held for another try."""
        groups: list[tuple[int, list[Prepared]]] = []  # (first ID, what was stored)
        done: set[int] = set()  # id() of each message of ``batch`` stored in some form
        pruned = 0
        try:
            first_id, pruned = await self._store(batch)
            groups.append((first_id, batch))
            done.update(id(p) for p in batch)
        except Exception as exc:  # SQLite, the disk, or something in one message's rows
            log.warning("dev inbox: a batch of %d failed (%s); one at a time", len(batch), exc)
            for item in batch:
                stored_as = await self._store_alone(item)
                if stored_as is None:
                    break  # not even the raw source could be stored: storing is down
                groups.append(stored_as)
                done.add(id(item))
        self._failing = not groups
        for item in batch:
            waiter = self._waiters.get(id(item))
            if waiter is not None:
                if not waiter.done():  # answered by this outcome: 451 if not stored
                    waiter.set_result(id(item) in done)
            elif id(item) not in done:
                self._hold(item)
        for first_id, group in groups:
            if log.isEnabledFor(logging.INFO):
                _log_captured(first_id, group)
        if not self.events.listening or not groups:
            return
        for first_id, group in groups:
            for message in stored(first_id, group):
                # "More": recipients beyond the summary's, for the live list's "and N more".
                self.events.publish("new", {**message.as_json(), "More": message.more_people})
        total, unread = await self.store.counts()
        self.events.publish("stats", {"total": total, "unread": unread, "pruned": pruned})

    async def _written(self, taken: list[Prepared]) -> None:
        """Free the share of ``queue_bytes`` of what left the queue, and wake who waits."""
        self._queued_bytes -= sum(len(p.incoming.raw) for p in taken)
        async with self._room:
            self._room.notify_all()

    def _fail_waiters(self) -> None:
        """The writer stopped: whoever still waits for a message to be stored never will."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(False)

    def _hold(self, item: Prepared) -> None:
        if len(self._held) < self._queue.maxsize:
            self._held.append(item)
        else:
            log.error("dev inbox: a captured message could not be stored and is lost")

    async def _store(self, batch: list[Prepared]) -> tuple[int, int]:
        assert self._writer is not None, "InboxWriter.start() was not called"
        return await self._writer.run(store_batch, batch, self.store.max_messages)

    async def _store_alone(self, item: Prepared) -> tuple[int, list[Prepared]] | None:
        try:
            first_id, _ = await self._store([item])
            return first_id, [item]
        except Exception as exc:  # this message's rows: store its raw source instead
            problem = f"stored as received; its parsed form could not be stored ({describe(exc)})"
        bare = prepare(item.incoming, Digest(Summary(problem=problem)))
        try:
            first_id, _ = await self._store([bare])
        except Exception:  # storing does not work at all
            log.exception("dev inbox: could not store a captured message")
            return None
        return first_id, [bare]


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
