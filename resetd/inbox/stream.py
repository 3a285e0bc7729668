"""``GET /dev/inbox/events``: the inbox's changes as Server-Sent Events.

Each open stream holds one subscription to the hub (:mod:`.events`): it
starts with the current counts, then relays every event, with a keepalive
comment when nothing happened for KEEPALIVE_SECONDS. The stream ends when
the hub drops or closes the subscription; the browser's EventSource then
reconnects and the page reloads its list.

:func:`publish_change` is what the pages and the API call after they change
the inbox: the change, then the new counts. It lives here, not beside the
hub, so that the hub imports nothing of the inbox.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from . import keys as ikeys

KEEPALIVE_SECONDS = 15.0


def _frame(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def event_stream(request: web.Request) -> web.StreamResponse:
    """``GET /dev/inbox/events``: text/event-stream of inbox changes."""
    hub = request.app[ikeys.events]
    store = request.app[ikeys.store]
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
    total, unread = await app[ikeys.store].counts()
    hub.publish("stats", {"total": total, "unread": unread})
