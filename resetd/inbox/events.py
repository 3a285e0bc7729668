"""Live updates: an in-process fan-out of inbox events (the SSE handler is in :mod:`.stream`).

The writer publishes ``new`` (one message summary) and ``stats`` (total/unread)
events, the pages and the API ``read`` and ``delete`` followed by ``stats``
(:func:`~.stream.publish_change`); each open ``/dev/inbox/events`` stream and
each long-polling API request holds a subscription. A subscriber that falls
far behind is dropped (its stream ends; the browser's EventSource reconnects
and the page reloads its list) rather than letting a queue grow without bound,
and at most ``MAX_SUBSCRIBERS`` subscriptions exist at once (the next request
gets a 503 with Retry-After): each may hold up to ``MAX_BACKLOG`` events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]
MAX_BACKLOG = 1000
MAX_SUBSCRIBERS = 100


class InboxEvents:
    def __init__(self, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self.max_subscribers = max_subscribers
        self.closed = False

    @property
    def listening(self) -> bool:
        return bool(self._subscribers)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() >= MAX_BACKLOG:
                self._subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait((kind, data))

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Event | None]]:
        """A queue of events until the block ends; ``None`` means: stop now.

        Raises HTTPServiceUnavailable when ``max_subscribers`` are listening.
        """
        if len(self._subscribers) >= self.max_subscribers:
            raise web.HTTPServiceUnavailable(
                text="Too many live listeners at once; try again shortly.",
                headers={"Retry-After": "5"},
            )
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        if self.closed:
            queue.put_nowait(None)
        else:
            self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        """End every subscription (at shutdown, so open streams do not hold it up)."""
        self.closed = True
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._subscribers.clear()
