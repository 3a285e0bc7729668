"""One message through the Mailpit-v1 API: summary and bodies, headers, raw, parts, links.

``{ID}`` may be ``latest``, optionally with ``?query=`` for the newest match.
Beyond Mailpit: ``message/latest?query=…&wait=SECONDS`` long-polls until a
match arrives (no client polling loops), and ``message/{ID}/links`` lists the
mail's links with a kind (reset / other), computed without any HTTP request.

Bodies, headers and links come from the view digested at ingest; only a
part download decodes anything, in the parser process.
"""

from __future__ import annotations

import asyncio
import json
import math
import time

from aiohttp import web

from .. import keys
from . import keys as ikeys
from .links import with_kinds
from .opened import view_of
from .parser import ParserFailed
from .schema import Stored, rfc3339
from .search import Query, parse_query, zone
from .stored_view import StoredView
from .stream import publish_change
from .unsubscribe import list_unsubscribe

MAX_WAIT = 300.0
PART_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


async def _resolve(request: web.Request) -> Stored:
    """The message named by ``{id}``; ``latest`` (optionally ``?query=``, ``?wait=``)."""
    store = request.app[ikeys.store]
    message_id = request.match_info["id"]
    if message_id != "latest":
        found = await store.get(message_id)
        if found is None:
            raise web.HTTPNotFound(text="message not found")
        return found
    query = parse_query(request.query.get("query", ""), zone(request.query.get("tz", "")))
    wait = _wait(request.query.get("wait") or "0")
    latest = await store.latest(query)
    if latest is None and wait:
        latest = await _wait_for_match(request, query, wait)
    if latest is None:
        raise web.HTTPNotFound(text="no message matches")
    return latest


async def _wait_for_match(request: web.Request, query: Query, wait: float) -> Stored | None:
    """The newest match arriving within ``wait`` seconds (a subscription, so bounded)."""
    store = request.app[ikeys.store]
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
    raw = await request.app[ikeys.store].raw(message.id)
    if raw is None:
        raise web.HTTPNotFound(text="message not found")
    return raw


async def _view(request: web.Request, message: Stored) -> StoredView:
    opened = await view_of(request.app, message)
    if opened is None:
        raise web.HTTPNotFound(text="message not found")
    return opened


async def get_message(request: web.Request) -> web.StreamResponse:
    message = await _resolve(request)
    opened = await _view(request, message)
    view, people = opened.view, opened.people
    if not message.read:
        await request.app[ikeys.store].set_read([message.id], True)
        await publish_change(request.app, "read", {"IDs": [message.id], "Read": True})
    summary = message.as_json()
    del summary["Created"], summary["Snippet"], summary["Attachments"]
    summary.update(
        {
            "To": [a.as_json() for a in people.to],
            "Cc": [a.as_json() for a in people.cc],
            "Bcc": [a.as_json() for a in people.bcc],
            "ReplyTo": [a.as_json() for a in people.reply_to],
            "Read": True,
            "ReturnPath": message.mail_from,
            "Date": rfc3339(message.sent_at if message.sent_at is not None else message.created),
            "Text": view.text,
            "HTML": view.html,
            "Inline": [a.as_json() for a in view.inline],
            "Attachments": [a.as_json() for a in view.attachments],
            "ListUnsubscribe": list_unsubscribe(view.headers),
            "Envelope": {"MailFrom": message.mail_from, "RcptTo": message.rcpt_tos},
            "ParseProblem": message.problem,
        }
    )
    return web.json_response(summary)


async def get_headers(request: web.Request) -> web.StreamResponse:
    opened = await _view(request, await _resolve(request))
    grouped: dict[str, list[str]] = {}
    for name, value in opened.view.headers:
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
    part_id = request.match_info["part"]
    try:
        found = await request.app[ikeys.parser].part(raw, part_id)
    except ParserFailed:
        raise web.HTTPServiceUnavailable(text="The part could not be decoded in time.") from None
    if found is None:
        raise web.HTTPNotFound(text="part not found")
    content_type, filename, data = found
    name = json.dumps(filename or f"part-{part_id}")
    return web.Response(
        body=data,
        headers={
            "Content-Type": part_content_type(content_type),
            "Content-Disposition": f"{part_disposition(content_type)}; filename={name}",
            "Content-Security-Policy": PART_CSP,
            "X-Content-Type-Options": "nosniff",
        },
    )


# Types a browser shows without running anything in them; every other part
# (HTML, SVG, XML, JavaScript, PDF …) is served as a download, never as a
# document of our origin.
PASSIVE_TYPES = frozenset(
    {"text/plain", "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif",
     "image/bmp", "image/x-icon", "image/vnd.microsoft.icon"}
)  # fmt: skip
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$&-^_.+")


def part_content_type(declared: str) -> str:
    """The part's own type as the mail declares it (``type/subtype``, with its charset
    for text), as Mailpit serves it; application/octet-stream when it is malformed."""
    media, _, charset = declared.partition(";")
    kind, slash, subtype = media.strip().lower().partition("/")
    if not (slash and kind and subtype and _TOKEN.issuperset(kind) and _TOKEN.issuperset(subtype)):
        return "application/octet-stream"
    charset = charset.strip().lower()
    if kind == "text" and charset and len(charset) <= 40 and _TOKEN.issuperset(charset):
        return f"{kind}/{subtype}; charset={charset}"
    return f"{kind}/{subtype}"


def part_disposition(declared: str) -> str:
    """``inline`` for a type a browser only shows (images, plain text, audio, video),
    ``attachment`` for anything it could run."""
    media = part_content_type(declared).partition(";")[0]
    passive = media in PASSIVE_TYPES or media.startswith(("audio/", "video/"))
    return "inline" if passive else "attachment"


async def get_links(request: web.Request) -> web.StreamResponse:
    message = await _resolve(request)
    opened = await _view(request, message)
    links = with_kinds(opened.links, request.app[keys.config])
    return web.json_response({"ID": message.id, "Links": [link.as_json() for link in links]})
