"""``[dev_inbox] webhook_url``: Mailpit's summary of each new message, POSTed as JSON.

The summaries come from the hub (:mod:`.events`) like any live listener's,
into a bounded queue that one task empties, a POST at a time (timeout
POST_TIMEOUT). Nothing on the way in waits for it: when the webhook is slow or
gone the queue fills and further summaries are dropped and counted, with a
log line, rather than held in memory or slowing SMTP. A failed POST is logged
and not tried again (Mailpit does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .events import InboxEvents

log = logging.getLogger(__name__)

QUEUE_SIZE = 100
POST_TIMEOUT = 5.0
# After the first, a log line per this many dropped summaries (or failed POSTs).
LOG_EVERY = 100


class InboxWebhook:
    def __init__(self, url: str, hub: InboxEvents, queue_size: int = QUEUE_SIZE) -> None:
        self.url = url
        self.hub = hub
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_size)
        self.dropped = 0
        self.failed = 0
        self.posted = 0

    def offer(self, summary: dict[str, Any]) -> None:
        """Queue one summary, or drop it (counted, logged) when the queue is full."""
        try:
            self.queue.put_nowait(summary)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % LOG_EVERY == 1:
                log.warning(
                    "dev inbox: the webhook is not keeping up; %d summaries dropped so far",
                    self.dropped,
                )

    async def listen(self) -> None:
        """Move each new message's summary from the hub to the queue, until the hub closes."""
        while not self.hub.closed:
            with self.hub.subscribe() as events:
                while (item := await events.get()) is not None:
                    kind, data = item
                    if kind == "new":
                        self.offer({k: v for k, v in data.items() if k != "More"})

    async def post_all(self, session: aiohttp.ClientSession) -> None:
        timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT)
        while True:
            summary = await self.queue.get()
            try:
                async with session.post(self.url, json=summary, timeout=timeout) as resp:
                    if 200 <= resp.status < 300:
                        self.posted += 1
                        continue
                    problem = f"answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"failed: {type(exc).__name__} {exc}".strip()
            self.failed += 1
            if self.failed % LOG_EVERY == 1:
                log.warning(
                    "dev inbox: webhook %s %s (%d failed so far)", self.url, problem, self.failed
                )


@contextlib.asynccontextmanager
async def running_webhook(url: str, hub: InboxEvents) -> AsyncIterator[InboxWebhook | None]:
    """The webhook's two tasks while the block runs (None and no task when ``url`` is empty)."""
    if not url:
        yield None
        return
    hook = InboxWebhook(url, hub)
    headers = {"User-Agent": "resetd dev inbox"}
    async with aiohttp.ClientSession(headers=headers) as session:
        tasks = [
            asyncio.create_task(hook.listen(), name="inbox-webhook-listen"),
            asyncio.create_task(hook.post_all(session), name="inbox-webhook-post"),
        ]
        try:
            yield hook
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
