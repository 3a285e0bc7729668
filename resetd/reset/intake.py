"""Step 1, behind the form: reset requests queued by group commit.

Concurrent requests share one short write transaction, run in one hand-off to
the database's writer thread, and each response waits until its own row is
committed, so nothing acknowledged can be lost. The same transaction counts
the per-IP and per-address limits: a request over its IP's limit is answered
429, and one over its address's limit is queued as ``limited``, which gets no
mail but costs what any other request costs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..config import LimitsConfig
from ..limits import Hit
from ..storage import Batch, Storage

log = logging.getLogger(__name__)

MAX_BATCH = 256
IN_FLIGHT = 2


@dataclass(frozen=True)
class Submission:
    email_norm: str
    client_ip: str
    user_agent: str
    # As typed, trimmed: among accounts an app stored under two spellings of one
    # address, the one stored exactly so gets the mail.
    email: str | None = None
    # The language of the page that asked: the mail is written in it.
    lang: str = "en"


class Intake:
    """Group commit for reset requests: one transaction per batch of concurrent requests."""

    def __init__(self, storage: Storage, limits: LimitsConfig, queued: Callable[[], None]) -> None:
        """``storage``: each batch is one :meth:`~resetd.storage.Storage.batch`, a
        hand-off to the writer thread queued behind the other hot writes instead
        of contending with them inside the database. ``queued`` is called after
        each batch commits (the processor's wake-up)."""
        self.storage = storage
        self.limits = limits
        self.queued = queued
        self._pending: list[tuple[Submission, asyncio.Future[int | None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._commits: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reset-request-intake")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._commits, return_exceptions=True)
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(web.HTTPServiceUnavailable())

    async def submit(self, submission: Submission) -> int | None:
        """Queue durably; returns None, or Retry-After seconds when the IP is over its limit."""
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending.append((submission, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        # Up to IN_FLIGHT batches at once: the next one waits in the writer thread's
        # queue, not for the loop to notice the previous commit, so the thread starts
        # it the moment the previous one ends.
        slots = asyncio.Semaphore(IN_FLIGHT)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await slots.acquire()
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                if not batch:
                    slots.release()
                    break
                task = asyncio.create_task(self._commit(batch, slots))
                self._commits.add(task)
                task.add_done_callback(self._commits.discard)

    async def _commit(
        self,
        batch: list[tuple[Submission, asyncio.Future[int | None]]],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            verdicts = await self._write([s for s, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(web.HTTPServiceUnavailable())
            raise
        except Exception as exc:  # the database is unwell: fail these requests, not the loop
            log.exception("reset requests: could not queue %d request(s)", len(batch))
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            slots.release()
        for (_, fut), verdict in zip(batch, verdicts, strict=True):
            if not fut.done():
                fut.set_result(verdict)
        self.queued()

    async def _write(self, batch: list[Submission]) -> list[int | None]:
        return await self.storage.batch(_queue_batch, batch, self.limits)


def _queue_batch(tx: Batch, batch: list[Submission], limits: LimitsConfig) -> list[int | None]:
    """One transaction (in the writer thread): count per-IP hits, count
    per-address hits for the admitted requests, queue them. Returns the per-IP
    verdicts (None, or Retry-After seconds) in order."""
    ip_verdicts = tx.limits.hit_many(
        [
            Hit(f"ip:{s.client_ip}", limits.requests_per_ip, limits.requests_per_ip_window)
            for s in batch
        ]
    )
    admitted = [s for s, v in zip(batch, ip_verdicts, strict=True) if v is None]
    addr_verdicts = tx.limits.hit_many(
        [
            Hit(f"addr:{s.email_norm}", limits.mails_per_address, limits.mails_per_address_window)
            for s in admitted
        ]
    )
    tx.requests.add_many(
        [
            (s.email_norm, s.email, s.client_ip, s.user_agent, v is not None, s.lang)
            for s, v in zip(admitted, addr_verdicts, strict=True)
        ]
    )
    return ip_verdicts
