"""One message through the Mailpit-v1 API: summary and bodies, headers, raw, parts, links.

``{ID}`` may be ``latest``, optionally with ``?query=`` for the newest match.
Beyond Mailpit: ``message/latest?query=…&wait=SECONDS`` long-polls until a
match arrives (no client polling loops), and ``message/{ID}/links`` lists the
mail's links with a kind (reset / other), computed without any HTTP request.
"""

from __future__ import annotations

import asyncio
import json
import math
import time

from aiohttp import web

from .. import keys
from . import appkeys as ikeys
from .events import publish_change
from .links import extract_links
from .schema import Stored, rfc3339
from .search import Query, parse_query
from .view import build_view, find_part

MAX_WAIT = 300.0
PART_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


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
    wait = _wait(request.query.get("wait") or "0")
    latest = await store.latest(query)
    if latest is None and wait:
        latest = await _wait_for_match(request, query, wait)
    if latest is None:
        raise web.HTTPNotFound(text="no message matches")
    return latest


async def _wait_for_match(request: web.Request, query: Query, wait: float) -> Stored | None:
    """The newest match arriving within ``wait`` seconds (a subscription, so bounded)."""
    store = request.app[keys.inbox_store]
    with request.app[ikeys.events].subscribe() as queue:
        latest = await store.latest(query)  # again: one may have arrived before subscribing
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
    return latest


def _wait(raw: str) -> float:
    """``?wait=`` in seconds, 0 to MAX_WAIT; anything else (nan, inf, -1) is a 400."""
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not 0 <= wait <= MAX_WAIT:  # also false for nan
        raise web.HTTPBadRequest(text=f"wait: expected 0-{MAX_WAIT:g} seconds, got {raw[:20]!r}")
    return wait


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
        await publish_change(request.app, "read", {"IDs": [message.id], "Read": True})
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
