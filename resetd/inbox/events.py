"""Live updates: an in-process fan-out of inbox events, served as Server-Sent Events.

The writer publishes ``new`` (one message summary), ``read``, ``delete`` and
``stats`` (total/unread) events; each open ``/dev/inbox/events`` stream and
each long-polling API request holds a subscription. A subscriber that falls
far behind is dropped (its stream ends; the browser's EventSource reconnects
and the page reloads its list) rather than letting a queue grow without bound,
and at most ``MAX_SUBSCRIBERS`` subscriptions exist at once (the next request
gets a 503 with Retry-After): each may hold up to ``MAX_BACKLOG`` events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from .. import keys
from . import keys as ikeys

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]
MAX_BACKLOG = 1000
MAX_SUBSCRIBERS = 100
KEEPALIVE_SECONDS = 15.0


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


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def event_stream(request: web.Request) -> web.StreamResponse:
    """``GET /dev/inbox/events``: text/event-stream of inbox changes."""
    hub = request.app[ikeys.events]
    store = request.app[keys.inbox_store]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    with hub.subscribe() as queue:
        await response.prepare(request)
        total, unread = await store.counts()
        try:
            await response.write(
                b"retry: 2000\n\n" + _frame("stats", {"total": total, "unread": unread})
            )
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                await response.write(_frame(*item))
        except ConnectionResetError:  # the browser went away
            pass
    return response


async def publish_change(app: web.Application, kind: str, data: dict[str, Any]) -> None:
    """Publish ``kind`` (read / delete) and then the new counts as ``stats``."""
    hub = app[ikeys.events]
    hub.publish(kind, data)
    total, unread = await app[keys.inbox_store].counts()
    hub.publish("stats", {"total": total, "unread": unread})
