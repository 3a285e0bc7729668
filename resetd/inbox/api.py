"""The Mailpit-v1-compatible REST API under ``/dev/inbox/api/v1``: lists and changes.

Shapes follow Mailpit, so its client libraries and test helpers work
unchanged. This module has the listing, search, read flags, deletes, ``info``
and the probes; one message's views are in api_message.py. Errors are JSON
``{"Error": …}`` (errors_middleware), never a 500 for input.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aiohttp import web

from ..bodies import read_json
from . import keys as ikeys
from .search import Query, parse_query, received_before, zone
from .store import Selection
from .stream import publish_change
from .tags import all_tags

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
    ids = body.get("ids")
    if ids is None or ids == []:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise web.HTTPBadRequest(text="IDs: expected a list of message IDs.")
    if len(ids) > MAX_IDS:
        raise web.HTTPBadRequest(text=f"IDs: at most {MAX_IDS} at once, got {len(ids)}.")
    return ids


async def change_body(request: web.Request, fields: frozenset[str]) -> dict[str, Any]:
    """The JSON body of a change, its keys lower-cased (Mailpit reads them in any
    case, as Go's decoder does). A key outside ``fields`` is a 400: ignoring a
    misspelt ``IDs`` or ``Search`` would have changed every message."""
    body = {str(k).lower(): v for k, v in (await _json_body(request)).items()}
    unknown = sorted(set(body) - fields)
    if unknown:
        expected = ", ".join(sorted(f.title().replace("Ids", "IDs") for f in fields))
        raise web.HTTPBadRequest(text=f"Unknown field {unknown[0][:40]!r}; expected {expected}.")
    return body


def selection(request: web.Request, body: dict[str, Any]) -> Selection:
    """Which messages a change names: ``IDs``, or the matches of ``Search`` (dates
    in the ``tz`` query parameter's zone), or neither: None, every message.

    Both at once is a 400 (as in Mailpit), and so is a Search that filters on
    nothing, which would otherwise mean every message.
    """
    ids = _ids(body)
    search = body.get("search")
    if search is None or search == "":
        return ids
    if not isinstance(search, str):
        raise web.HTTPBadRequest(text="Search: expected a search string.")
    if ids is not None:
        raise web.HTTPBadRequest(text="Give either IDs or Search, not both.")
    query = parse_query(search, zone(request.query.get("tz", "")))
    if query.is_empty:
        raise web.HTTPBadRequest(text="Search: the search has no term to match.")
    return query


async def _listing(request: web.Request, query: Query) -> web.Response:
    store = request.app[ikeys.store]
    if request.query.get("before"):
        tz = zone(request.query.get("tz", ""))
        query = received_before(query, request.query["before"], tz)
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
            "messages_unread": await store.unread_matching(query),
            "start": start,
            "tags": list(await all_tags(store.db)),
            "messages": [m.as_json() for m in messages],
        }
    )


async def list_messages(request: web.Request) -> web.StreamResponse:
    return await _listing(request, Query())


def _query(request: web.Request) -> Query:
    return parse_query(request.query.get("query", ""), zone(request.query.get("tz", "")))


async def search_messages(request: web.Request) -> web.StreamResponse:
    return await _listing(request, _query(request))


async def set_read(request: web.Request) -> web.StreamResponse:
    body = await change_body(request, frozenset({"ids", "search", "read"}))
    read = body.get("read", False)
    if not isinstance(read, bool):
        raise web.HTTPBadRequest(text="Read: expected true or false.")
    store = request.app[ikeys.store]
    changed = await store.set_read(selection(request, body), read)
    await publish_change(request.app, "read", {"IDs": changed, "Read": read})
    return web.Response(text="ok")


async def delete_messages(request: web.Request) -> web.StreamResponse:
    body = await change_body(request, frozenset({"ids", "search"}))
    deleted = await request.app[ikeys.store].delete(selection(request, body))
    await publish_change(request.app, "delete", {"IDs": _listed(deleted)})
    return web.Response(text="ok")


async def delete_search(request: web.Request) -> web.StreamResponse:
    query = _query(request)
    if query.is_empty:
        raise web.HTTPBadRequest(text="query: a search is required (DELETE messages clears all).")
    deleted = await request.app[ikeys.store].delete(query)
    await publish_change(request.app, "delete", {"IDs": _listed(deleted)})
    return web.Response(text="ok")


# Deleted IDs a live update lists one by one; past it, pages just reload (IDs null).
LISTED_DELETES = 1000


def _listed(deleted: list[str] | None) -> list[str] | None:
    return deleted if deleted is not None and len(deleted) <= LISTED_DELETES else None


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
            "Tags": await all_tags(store.db),
            "RuntimeStats": {
                "Memory": memory_in_use(),
                "Uptime": int(time.time() - stats.started),
                "MessagesDeleted": await store.pruned(),
                "SMTPAccepted": stats.accepted,
                "SMTPAcceptedSize": stats.accepted_size,
                "SMTPRejected": stats.rejected,
                "SMTPIgnored": 0,
            },
        }
    )


def memory_in_use() -> int:
    """This process's resident memory in bytes (Mailpit reports what its runtime
    holds from the system); 0 where /proc is not there to say."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident * os.sysconf("SC_PAGE_SIZE")


async def livez(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def readyz(request: web.Request) -> web.StreamResponse:
    await request.app[ikeys.store].counts()  # the database answers
    return web.Response(text="ok")
