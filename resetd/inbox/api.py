"""The Mailpit-v1-compatible REST API under ``/dev/inbox/api/v1``, plus two extras.

Shapes follow Mailpit, so its client libraries and test helpers work
unchanged. Beyond Mailpit: ``message/latest?query=…&wait=SECONDS`` long-polls
until a match arrives, and ``message/{ID}/links`` lists the mail's links.
Errors are JSON ``{"Error": …}`` (errors_middleware), never a 500 for input.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from .. import keys
from . import appkeys as ikeys
from .links import extract_links
from .search import Query, parse_query
from .store import Stored, rfc3339
from .view import build_view, find_part

MAX_LIMIT = 1000
MAX_WAIT = 300.0
PART_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


def _int(request: web.Request, name: str, default: int, upper: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected an integer") from None
    return max(0, min(value, upper))


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="The body is not valid JSON.") from None
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
    return ids


async def _listing(request: web.Request, query: Query) -> web.Response:
    store = request.app[keys.inbox_store]
    start = _int(request, "start", 0, 10**9)
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
    store = request.app[keys.inbox_store]
    changed = await store.set_read(_ids(body), read)
    await _publish_change(request, "read", {"IDs": changed, "Read": read})
    return web.Response(text="ok")


async def delete_messages(request: web.Request) -> web.StreamResponse:
    ids = _ids(await _json_body(request))
    await request.app[keys.inbox_store].delete(ids)
    await _publish_change(request, "delete", {"IDs": ids})
    return web.Response(text="ok")


async def delete_search(request: web.Request) -> web.StreamResponse:
    query = parse_query(request.query.get("query", ""))
    if query.is_empty:
        raise web.HTTPBadRequest(text="query: a search is required (DELETE messages clears all).")
    await request.app[keys.inbox_store].delete_matching(query)
    await _publish_change(request, "delete", {"IDs": None})
    return web.Response(text="ok")


async def _publish_change(request: web.Request, kind: str, data: dict[str, Any]) -> None:
    events = request.app[ikeys.events]
    events.publish(kind, data)
    total, unread = await request.app[keys.inbox_store].counts()
    events.publish("stats", {"total": total, "unread": unread})


async def _resolve(request: web.Request) -> Stored:
    """The message named by ``{id}``; ``latest`` (optionally ``?query=``, ``?wait=``)."""
    store = request.app[keys.inbox_store]
    message_id = request.match_info["id"]
    if message_id != "latest":
        found = await store.get(message_id)
        if found is None:
            raise web.HTTPNotFound(text="message not found")
        return found
    query = parse_query(request.query.get("query", ""))
    try:
        wait = min(max(float(request.query.get("wait") or 0), 0.0), MAX_WAIT)
    except ValueError:
        raise web.HTTPBadRequest(text="wait: expected a number of seconds") from None
    with request.app[ikeys.events].subscribe() as queue:
        latest = await store.latest(query)
        deadline = time.monotonic() + wait
        while latest is None and (remaining := deadline - time.monotonic()) > 0:
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            if item is None:
                break
            if item[0] == "new":
                latest = await store.latest(query)
    if latest is None:
        raise web.HTTPNotFound(text="no message matches")
    return latest


async def _raw(request: web.Request, message: Stored) -> bytes:
    raw = await request.app[keys.inbox_store].raw(message.id)
    if raw is None:
        raise web.HTTPNotFound(text="message not found")
    return raw


async def get_message(request: web.Request) -> web.StreamResponse:
    message = await _resolve(request)
    view = await asyncio.to_thread(build_view, await _raw(request, message))
    if not message.read:
        await request.app[keys.inbox_store].set_read([message.id], True)
        await _publish_change(request, "read", {"IDs": [message.id], "Read": True})
    summary = message.as_json()
    del summary["Created"], summary["Snippet"], summary["Attachments"]
    summary.update(
        {
            "Read": True,
            "ReturnPath": message.mail_from,
            "Date": rfc3339(message.sent_at if message.sent_at is not None else message.created),
            "Text": view.text,
            "HTML": view.html,
            "Inline": [a.as_json() for a in view.inline],
            "Attachments": [a.as_json() for a in view.attachments],
            "Envelope": {"MailFrom": message.mail_from, "RcptTo": message.rcpt_tos},
            "ParseProblem": message.problem or view.problem,
        }
    )
    return web.json_response(summary)


async def get_headers(request: web.Request) -> web.StreamResponse:
    view = await asyncio.to_thread(build_view, await _raw(request, await _resolve(request)))
    grouped: dict[str, list[str]] = {}
    for name, value in view.headers:
        grouped.setdefault(name, []).append(value)
    return web.json_response(grouped)


async def get_raw(request: web.Request) -> web.StreamResponse:
    message = await _resolve(request)
    raw = await _raw(request, message)
    headers = {"Content-Security-Policy": PART_CSP}
    if request.query.get("dl"):
        headers["Content-Disposition"] = f'attachment; filename="message-{message.id}.eml"'
    return web.Response(body=raw, content_type="text/plain", charset="utf-8", headers=headers)


async def get_part(request: web.Request) -> web.StreamResponse:
    raw = await _raw(request, await _resolve(request))
    found = await asyncio.to_thread(find_part, raw, request.match_info["part"])
    if found is None:
        raise web.HTTPNotFound(text="part not found")
    part, data = found
    # Served from our origin, so never as an active document: sandboxed, and
    # anything that is not an image is a download.
    inline = part.content_type.startswith("image/") and part.content_type != "image/svg+xml"
    name = json.dumps(part.filename or f"part-{part.part_id}")
    disposition = "inline" if inline else "attachment"
    return web.Response(
        body=data,
        headers={
            "Content-Type": part.content_type if inline else "application/octet-stream",
            "Content-Disposition": f"{disposition}; filename={name}",
            "Content-Security-Policy": PART_CSP,
        },
    )


async def get_links(request: web.Request) -> web.StreamResponse:
    message = await _resolve(request)
    view = await asyncio.to_thread(build_view, await _raw(request, message))
    origin = request.app[keys.config].public_origin
    links = extract_links(view.text, view.html, origin)
    return web.json_response({"ID": message.id, "Links": [link.as_json() for link in links]})


async def info(request: web.Request) -> web.StreamResponse:
    store = request.app[keys.inbox_store]
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
    await request.app[keys.inbox_store].counts()  # the database answers
    return web.Response(text="ok")
