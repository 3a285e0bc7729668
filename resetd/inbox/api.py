"""The Mailpit-v1-compatible REST API under ``/dev/inbox/api/v1``: lists and changes.

Shapes follow Mailpit, so its client libraries and test helpers work
unchanged. This module has the listing, search, read flags, deletes, ``info``
and the probes; one message's views are in api_message.py. Errors are JSON
``{"Error": …}`` (errors_middleware), never a 500 for input.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..bodies import read_json
from . import keys as ikeys
from .search import Query, parse_query
from .stream import publish_change

MAX_LIMIT = 1000
MAX_START = 10**9
# IDs in one PUT or DELETE body (a page of MAX_LIMIT is far below it).
MAX_IDS = 10_000


def _int(request: web.Request, name: str, default: int, upper: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected an integer") from None
    if not 0 <= value <= upper:
        raise web.HTTPBadRequest(text=f"{name}: expected 0-{upper}, got {value}")
    return value


async def _json_body(request: web.Request) -> dict[str, Any]:
    data = await read_json(request)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="Expected a JSON object.")
    return data


def _ids(body: dict[str, Any]) -> list[str] | None:
    ids = body.get("IDs")
    if ids is None or ids == []:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise web.HTTPBadRequest(text="IDs: expected a list of message IDs.")
    if len(ids) > MAX_IDS:
        raise web.HTTPBadRequest(text=f"IDs: at most {MAX_IDS} at once, got {len(ids)}.")
    return ids


async def _listing(request: web.Request, query: Query) -> web.Response:
    store = request.app[ikeys.store]
    start = _int(request, "start", 0, MAX_START)
    limit = _int(request, "limit", 50, MAX_LIMIT)
    messages, matches = await store.search(query, start, limit)
    total, unread = await store.counts()
    return web.json_response(
        {
            "total": total,
            "unread": unread,
            "count": len(messages),
            "messages_count": matches,
            "start": start,
            "tags": [],
            "messages": [m.as_json() for m in messages],
        }
    )


async def list_messages(request: web.Request) -> web.StreamResponse:
    return await _listing(request, Query())


async def search_messages(request: web.Request) -> web.StreamResponse:
    return await _listing(request, parse_query(request.query.get("query", "")))


async def set_read(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    read = body.get("Read", False)
    if not isinstance(read, bool):
        raise web.HTTPBadRequest(text="Read: expected true or false.")
    store = request.app[ikeys.store]
    changed = await store.set_read(_ids(body), read)
    await publish_change(request.app, "read", {"IDs": changed, "Read": read})
    return web.Response(text="ok")


async def delete_messages(request: web.Request) -> web.StreamResponse:
    ids = _ids(await _json_body(request))
    await request.app[ikeys.store].delete(ids)
    await publish_change(request.app, "delete", {"IDs": ids})
    return web.Response(text="ok")


async def delete_search(request: web.Request) -> web.StreamResponse:
    query = parse_query(request.query.get("query", ""))
    if query.is_empty:
        raise web.HTTPBadRequest(text="query: a search is required (DELETE messages clears all).")
    await request.app[ikeys.store].delete_matching(query)
    await publish_change(request.app, "delete", {"IDs": None})
    return web.Response(text="ok")


async def info(request: web.Request) -> web.StreamResponse:
    store = request.app[ikeys.store]
    stats = request.app[ikeys.stats]
    total, unread = await store.counts()
    return web.json_response(
        {
            "Version": "resetd",
            "LatestVersion": "",
            "Database": store.db.path,
            "DatabaseSize": store.file_size(),
            "Messages": total,
            "Unread": unread,
            "Tags": {},
            "RuntimeStats": {
                "Uptime": int(time.time() - stats.started),
                "MessagesDeleted": await store.pruned(),
                "SMTPAccepted": stats.accepted,
                "SMTPAcceptedSize": stats.accepted_size,
                "SMTPRejected": stats.rejected,
                "SMTPIgnored": 0,
            },
        }
    )


async def livez(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.StreamResponse:
    await request.app[ikeys.store].counts()  # the database answers
    return web.Response(text="ok")
