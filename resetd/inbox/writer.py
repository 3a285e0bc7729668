"""Batched writes: the SMTP handler queues, one task stores in batches, then SMTP answers.

The handler digests each message (see parser.py), adds it to the batch being
formed and waits for that batch's commit: the reply to DATA is 250 only once
the mail is in the database, visible to every page and API call, as Mailpit
answers. Batches still group commits: a batch waits, GATHER_WAIT at most,
for the transactions under way (from MAIL on) to join it, and while one batch
is being written in the worker thread every message that arrives joins the
next; under load a transaction carries one message per busy connection, and
a lone message waits for nothing. Every message of a batch waits on the one
future of its batch: no timer and no future per message.

A batch of a few ordinary mails (INLINE_MESSAGES, INLINE_BYTES) is committed
on the loop itself (:class:`~resetd.db.LoopWriter`): eight 5 KB mails take
about 0.4 ms, less than a hand-off to the writer thread added to each
sender's wait (the thread first has to win the GIL from the busy loop, and
its answer waits for the loop's next turn). That connection never waits for a
lock, another connection writing sends the batch to the thread, and it never
checkpoints: the WAL is copied back from the thread every CHECKPOINT_BYTES.
Larger batches, and large mails, are written in the thread as before.

The raw messages waiting add up to at most ``queue_bytes`` (backpressure: a
message that does not fit waits for room, QUEUE_WAIT seconds at most).

No mail may stop the writer. A batch that fails is stored again one message
at a time; a message that still fails is stored as its raw source with the
error as its parse problem. What cannot be stored at all (a locked or broken
database, a full disk) is answered 451 (:class:`~resetd.errors.NotStored`),
so the client keeps it; never 250. :meth:`InboxWriter.stop` ends within
STOP_TIMEOUT seconds whatever is waiting; what it could not store is
answered 451 and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ..db import BatchWriter, LoopWriter
from ..errors import NotStored
from .digest import Digest, describe, quick_digest, unparsed_digest
from .events import InboxEvents
from .ingest import Incoming, Prepared, prepare, store_batch, stored
from .parser import ParserProcess
from .store import InboxStore
from .summary import Summary

log = logging.getLogger(__name__)

# How long a mail may wait for room under ``queue_bytes`` before the answer is 451.
QUEUE_WAIT = 30.0
# The longest stop() takes; what is still waiting then is answered 451, and logged.
STOP_TIMEOUT = 5.0
# Longest a batch waits for messages still arriving to join it (seconds); see _gather.
GATHER_WAIT = 0.01
# SQLite copies the WAL back into the database every 1,000 pages by default.
# Each commit appends the pages it touched, the same index pages again and
# again, and with a commit per busy connection's message the copying took a
# fifth of the writer's time; at 10,000 pages (a WAL of up to 40 MB, reused
# after) each hot page is copied back ten times less often.
WRITER_PRAGMAS = ("PRAGMA wal_autocheckpoint=10000",)
# Raw bytes that may wait for their commit (a message larger than this waits
# until nothing else does): a hundred 1 MiB messages would otherwise all sit in memory.
QUEUE_BYTES = 32 * 1024 * 1024
# A batch of at most this many messages and raw bytes is committed on the loop
# (LoopWriter): eight 5 KB mails take about 0.4 ms there, less than the hand-off
# to the writer thread adds to each sender's wait. The bounds keep any one such
# commit to a millisecond or two; a larger batch goes to the thread.
INLINE_MESSAGES = 32
INLINE_BYTES = 128 * 1024
# Raw bytes committed on the loop between two checkpoints (run in the writer
# thread: the loop's connection never copies the WAL back itself).
CHECKPOINT_BYTES = 8 * 1024 * 1024


class _Outcome(asyncio.Future[set[int]]):
    """A batch's outcome, which no one sender can cancel for the others.

    A sender whose task is cancelled (its connection went away) would cancel
    the future it awaits; this one refuses, so the task is cancelled once the
    batch is settled, and the batch's other senders still get their answer.
    One future per batch and no ``shield`` (a future and two callbacks more)
    per message.
    """

    def cancel(self, msg: object = None) -> bool:
        return False


class _Batch:
    """Messages committed together, and the one future their senders wait on.

    The future's result is the ``id()`` of each message that was stored (in
    some form); a message not among them is answered 451.
    """

    __slots__ = ("done", "items")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: list[Prepared] = []
        self.done: asyncio.Future[set[int]] = _Outcome(loop=loop)

    def settle(self, stored_ids: set[int]) -> None:
        if not self.done.done():
            self.done.set_result(stored_ids)


class Arrival:
    """A transaction under way: the writer may wait for its message to join a batch.

    :meth:`InboxWriter.expect` hands one out when MAIL is accepted; :meth:`done`
    (idempotent) is called once the message joined a batch, or the
    transaction ended without one (refused, RSET, the connection closed).
    """

    __slots__ = ("_writer",)

    def __init__(self, writer: InboxWriter | None) -> None:
        self._writer = writer

    def done(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer._arrived()


class _Written:
    """What one batch write stored: (first ID, messages) per transaction."""

    __slots__ = ("groups", "ids", "pruned")

    def __init__(self) -> None:
        self.groups: list[tuple[int, list[Prepared]]] = []
        self.ids: set[int] = set()  # id() of each message of the batch stored in some form
        self.pruned = 0


class InboxWriter:
    def __init__(
        self,
        store: InboxStore,
        events: InboxEvents,
        parser: ParserProcess,
        batch_size: int = 500,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.store = store
        self.events = events
        self.parser = parser
        # At most this many messages in one transaction; more wait for the next.
        self.batch_size = batch_size
        self.queue_bytes = queue_bytes
        self._queued_bytes = 0  # raw bytes submitted and not yet written
        self._room = asyncio.Condition()  # notified after each batch is written
        self._room_wanted = 0  # submitters waiting for room
        self._closed = False  # stop() was called
        self._forming: list[_Batch] = []  # waiting for the writer, oldest first
        self._writing: _Batch | None = None  # in the worker thread now
        self._wakeup: asyncio.Future[None] | None = None  # the idle writer waits on it
        self._arriving = 0  # Arrivals not done yet
        self._all_in: asyncio.Future[None] | None = None  # a gathering batch waits on it
        self._task: asyncio.Task[None] | None = None
        self._writer: BatchWriter | None = None
        self._inline: LoopWriter | None = None
        self._inline_bytes = 0  # raw bytes committed on the loop since the last checkpoint
        self._checkpoint: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._writer = BatchWriter(self.store.db.path, WRITER_PRAGMAS)
        self._inline = LoopWriter(self.store.db.path)
        self._task = asyncio.create_task(self._run(), name="inbox-writer")
        self._task.add_done_callback(lambda _: self._fail_waiters())

    def _check(self) -> None:
        if self._closed or (self._task is not None and self._task.done()):
            raise NotStored("the inbox writer is not running")

    def expect(self) -> Arrival:
        """A transaction began (MAIL): a batch about to be written may wait for it."""
        self._arriving += 1
        return Arrival(self)

    def _arrived(self) -> None:
        self._arriving -= 1
        all_in = self._all_in
        if not self._arriving and all_in is not None and not all_in.done():
            all_in.set_result(None)

    async def submit(self, item: Incoming, arrival: Arrival | None = None) -> None:
        """Digest one message and return once it is stored and visible.

        ``arrival``, the message's own from :meth:`expect`, is done once it has
        joined a batch (or failed to).

        Raises NotStored when the writer is not running or stops first, when
        there is no room under ``queue_bytes`` for QUEUE_WAIT seconds, or when
        the message could not be stored.
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
        joined = False
        try:
            try:
                # The quick route called here, not through the parser's coroutine:
                # nearly every mail takes it, and an await less is per message.
                digest = quick_digest(item.raw, item.rcpt_tos)
                if digest is None:
                    digest = await self.parser.full_digest(item.raw, item.rcpt_tos)
                ready = prepare(item, digest)
            except Exception as exc:  # a flaw this mail found in our reading: store it raw
                log.exception("dev inbox: could not digest a captured message; storing it raw")
                ready = prepare(item, unparsed_digest(item.raw, item.rcpt_tos, describe(exc)))
            self._check()
            batch = self._join(ready)
            joined = True  # from here on the writer frees its share
            if arrival is not None:
                arrival.done()
            stored_ids = await batch.done
        finally:
            if arrival is not None:
                arrival.done()
            if not joined:  # never joined a batch: nothing else will free its share
                self._queued_bytes -= size
        if id(ready) not in stored_ids:
            raise NotStored("the inbox could not store the message")

    def _join(self, ready: Prepared) -> _Batch:
        """Add ``ready`` to the batch being formed, and wake the writer if it is idle."""
        forming = self._forming
        if not forming or len(forming[-1].items) >= self.batch_size:
            forming.append(_Batch(asyncio.get_running_loop()))
        batch = forming[-1]
        batch.items.append(ready)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return batch

    def _has_room(self, size: int) -> bool:
        return not self._queued_bytes or self._queued_bytes + size <= self.queue_bytes

    async def _wait_for_room(self, size: int) -> None:
        self._room_wanted += 1
        try:
            async with self._room:
                await self._room.wait_for(lambda: self._has_room(size))
        finally:
            self._room_wanted -= 1

    async def flush(self) -> None:
        """Return once everything submitted so far is stored or given up (tests, long-polls)."""
        while True:
            task = self._task
            batches = [b for b in (self._writing, *self._forming) if b is not None]
            if task is None or task.done() or not batches:
                return
            # Batches are settled in order: the newest one settled means all were.
            last: asyncio.Future[Any] = batches[-1].done
            await asyncio.wait({last, task}, return_when=asyncio.FIRST_COMPLETED)

    async def stop(self) -> None:
        """Store what is waiting, then end the task; never longer than STOP_TIMEOUT."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            self._fail_waiters()
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        try:
            if not task.done():
                async with asyncio.timeout(STOP_TIMEOUT):
                    await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            lost = sum(len(b.items) for b in (self._writing, *self._forming) if b is not None)
            log.error("dev inbox: stopped with %d captured message(s) not stored", lost)
        self._fail_waiters()
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._checkpoint, max(0.1, deadline - time.monotonic()))
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                await asyncio.wait_for(writer.close(), max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                log.error("dev inbox: the database thread did not finish in time")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._forming:
                if self._closed:
                    return
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            if self._arriving and not self._closed:
                await self._gather(loop)
            batch = self._writing = self._forming.pop(0)
            written = _Written()
            try:
                written = await self._write(batch.items)
            except Exception:  # the writer outlives any one batch; see the docstring
                log.exception("dev inbox: storing %d captured message(s) failed", len(batch.items))
            finally:
                self._writing = None
                batch.settle(written.ids)  # the replies first: 250, or 451 if not stored
                await self._written(batch.items)
            if written.groups:
                try:
                    await self._publish(written)
                except Exception:  # a page's live update is not worth the writer
                    log.exception("dev inbox: publishing new messages failed")

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait, GATHER_WAIT at most, for the messages still arriving to join.

        A commit costs about four messages' worth of writing whatever it
        holds, and each sender waits for its own: under load, committing the
        moment the first message is in made transactions of one or two
        messages. A lone message has nothing arriving beside it and waits for
        nothing.
        """
        all_in = self._all_in = loop.create_future()
        timer = loop.call_later(GATHER_WAIT, all_in.set_result, None)
        try:
            await all_in
        finally:
            timer.cancel()
            self._all_in = None

    async def _write(self, items: list[Prepared]) -> _Written:
        """Store ``items``: what fails is tried alone, then stored raw; once not even
        a raw source can be stored, storing is down and the rest is not tried."""
        written = _Written()
        try:
            first_id, written.pruned = await self._store(items)
            written.groups.append((first_id, items))
            written.ids.update(id(p) for p in items)
        except Exception as exc:  # SQLite, the disk, or something in one message's rows
            log.warning("dev inbox: a batch of %d failed (%s); one at a time", len(items), exc)
            for item in items:
                stored_as = await self._store_alone(item)
                if stored_as is None:
                    break  # not even the raw source could be stored: storing is down
                written.groups.append(stored_as)
                written.ids.add(id(item))
        return written

    async def _publish(self, written: _Written) -> None:
        """Log what was stored and tell live listeners (after the senders were answered)."""
        if log.isEnabledFor(logging.INFO):
            for first_id, group in written.groups:
                _log_captured(first_id, group)
        if not self.events.listening:
            return
        for first_id, group in written.groups:
            for message in stored(first_id, group):
                # "More": recipients beyond the summary's, for the live list's "and N more".
                self.events.publish("new", {**message.as_json(), "More": message.more_people})
        total, unread = await self.store.counts()
        self.events.publish("stats", {"total": total, "unread": unread, "pruned": written.pruned})

    async def _written(self, items: list[Prepared]) -> None:
        """Free the share of ``queue_bytes`` of what was written, and wake who waits."""
        self._queued_bytes -= sum(len(p.incoming.raw) for p in items)
        if self._room_wanted:
            async with self._room:
                self._room.notify_all()

    def _fail_waiters(self) -> None:
        """The writer stopped: whoever still waits for a message to be stored never will."""
        for batch in (self._writing, *self._forming):
            if batch is not None:
                batch.settle(set())

    async def _store(self, batch: list[Prepared]) -> tuple[int, int]:
        assert self._writer is not None, "InboxWriter.start() was not called"
        if self._inline is not None and len(batch) <= INLINE_MESSAGES:
            size = sum(len(p.incoming.raw) for p in batch)
            if size <= INLINE_BYTES:
                done = self._inline.try_run(store_batch, batch, self.store.max_messages)
                if done is not None:
                    self._committed_inline(size)
                    return done
                # Another connection holds the write lock: the thread waits for it.
        return await self._writer.run(store_batch, batch, self.store.max_messages)

    def _committed_inline(self, size: int) -> None:
        """Count what the loop committed; past CHECKPOINT_BYTES, checkpoint in the
        writer thread (one at a time; what it does not finish, the next one does)."""
        self._inline_bytes += size
        running = self._checkpoint is not None and not self._checkpoint.done()
        if self._inline_bytes < CHECKPOINT_BYTES or running or self._writer is None:
            return
        self._inline_bytes = 0
        self._checkpoint = asyncio.create_task(self._checkpointed(self._writer))

    @staticmethod
    async def _checkpointed(writer: BatchWriter) -> None:
        try:
            await writer.checkpoint()
        except Exception as exc:  # the next one tries again; SQLite's WAL stays valid
            log.warning("dev inbox: checkpoint failed (%s)", exc)

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
