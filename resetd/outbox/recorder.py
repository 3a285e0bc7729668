"""Marks mail the relay accepted as sent, many at a time.

Senders hand each accepted mail over and go on to the next one; one task
commits everything handed over while its previous commit ran, so a burst
costs the database one commit per batch rather than one per mail. Until a
mail is marked it stays held by this process: a mail left unmarked would be
claimed and sent again after its lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..storage.outbox import OutboxStore, OutgoingMail
from .attempts import claim_lost

log = logging.getLogger("resetd.outbox")


class SentRecorder:
    RECORD_EVERY = 0.005  # seconds between commits of accepted mail

    def __init__(
        self, store: OutboxStore, lease: float, recorded: Callable[[list[OutgoingMail]], None]
    ) -> None:
        self.store = store
        self.lease = lease
        self._recorded = recorded  # called with each batch once its outcome is settled
        self._accepted: list[OutgoingMail] = []
        self._ready = asyncio.Event()
        self._senders_done = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-recorder")

    def accepted(self, mail: OutgoingMail) -> None:
        self._accepted.append(mail)
        self._ready.set()

    async def stop(self, within: float) -> None:
        """Mark what was accepted (no more will come), then end; bounded by ``within``."""
        self._senders_done = True
        self._ready.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait([self._task], timeout=within)
        if not done:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            if not self._accepted:
                if self._senders_done:
                    return
                await self._ready.wait()
                self._ready.clear()
                continue
            if not self._senders_done:
                # Let a few more arrive: one commit per RECORD_EVERY, not per mail.
                await asyncio.sleep(self.RECORD_EVERY)
            batch, self._accepted = self._accepted, []
            try:
                await self._mark_sent(batch)
            except self.store.errors.error:
                log.exception(
                    "outbox: could not mark %d accepted mail(s) sent; they are sent again "
                    "in %.0f s",
                    len(batch),
                    self.lease,
                )
            finally:
                self._recorded(batch)

    async def _mark_sent(self, batch: list[OutgoingMail]) -> None:
        """Record acceptance, trying hard: a mail left unmarked would be sent twice."""
        for pause in (0.1, 0.5, 1.0, 2.0):
            try:
                lost = await self.store.mark_sent(batch)
                break
            except self.store.errors.unavailable:  # e.g. locked by another process
                await asyncio.sleep(pause)
        else:
            lost = await self.store.mark_sent(batch)
        for mail in lost:
            claim_lost(mail)
