"""Forgetting old rows: ``[database] keep_days`` of history, pruned in the background.

Sent outbox rows (their bodies are already dropped at delivery), ledger
entries of tokens that expired (used ones included: every token expires) and
audit events older than ``keep_days`` are deleted. Pending and failed mail is
never pruned: it still needs a delivery or an operator.

Each table is pruned in batches of :data:`BATCH` rows, one short transaction
each, with a pause between them, so pruning a year of history never holds
the event loop or the database's write lock for long: requests and mail go
on in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import keys
from .storage import Storage
from .storage.retention import HISTORY

log = logging.getLogger(__name__)

BATCH = 500  # rows per transaction
PAUSE = 0.05  # seconds between two batches: other writers go first
EVERY = 3600.0  # seconds between two prunings
FIRST_AFTER = 5.0  # seconds after start: the start-up work goes first

DAY = 86400


class Retention:
    """Prunes rows older than ``keep_days`` (0 keeps everything)."""

    def __init__(self, storage: Storage, keep_days: int) -> None:
        self.storage = storage
        self.keep_days = keep_days

    async def prune(self) -> dict[str, int]:
        """Delete what is older than ``keep_days``, batch by batch; returns how many
        rows went from each table."""
        gone = dict.fromkeys(HISTORY, 0)
        if self.keep_days <= 0:
            return gone
        cutoff = await self.storage.now() - self.keep_days * DAY
        for kind in HISTORY:
            while True:
                deleted = await self.storage.retention.prune(kind, cutoff, BATCH)
                gone[kind] += deleted
                if deleted < BATCH:
                    break
                await asyncio.sleep(PAUSE)
        return gone

    async def run(self) -> None:
        """Prune every :data:`EVERY` seconds, for ever (cancelled at shutdown)."""
        await asyncio.sleep(FIRST_AFTER)
        while True:
            try:
                gone = await self.prune()
            except Exception:  # e.g. locked for longer than the busy timeout: next time
                log.exception("retention: pruning failed; trying again in %.0f s", EVERY)
            else:
                if any(gone.values()):
                    counts = " ".join(f"{name}={n}" for name, n in gone.items())
                    log.info(
                        "retention: pruned rows older than %d days: %s", self.keep_days, counts
                    )
            await asyncio.sleep(EVERY)


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """The pruning task, for the app's lifetime."""
    retention = Retention(app[keys.storage], app[keys.config].database.keep_days)
    task = asyncio.create_task(retention.run(), name="retention")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
