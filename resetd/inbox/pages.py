"""The inbox's HTML pages: the list, one message, delete, the .eml download.

The list reads summary rows only (at most LIST_ADDRESSES addresses a row);
the message page reads the view digested at ingest and parses nothing. It
shows the HTML body in an
``<iframe sandbox srcdoc>`` without ``allow-scripts``, under a page CSP that
allows no inline script either; remote images stay blocked (no third-party
requests), ``cid:`` images come from the part URLs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .. import keys
from ..errors import BadSearch
from ..render import render
from . import keys as ikeys
from .access import inbox_path
from .links import reset_info, with_kinds
from .message_view import iframe_document
from .opened import view_of
from .schema import Stored
from .search import MAX_QUERY_LENGTH, Query, parse_query
from .store import InboxStore
from .stream import publish_change

PAGE_SIZE = 50
RAW_SHOWN = 512 * 1024  # the raw tab shows this much; the .eml download has it all
PEOPLE_SHOWN = 100  # addresses shown per field on the message page
RESET_PANELS = 10  # reset-link panels on the message page (the Links tab lists all)
# The list page's own policy, so the inbox does not depend on the site default:
# EventSource needs connect-src, the favicon badge is a data: PNG, no inline script.
LIST_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
MESSAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)


def _int_param(request: web.Request, name: str, default: int, upper: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        return default
    return max(0, min(value, upper))


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def plural(n: int, singular: str, plural_form: str = "") -> str:
    """``"1 message"``, ``"2 messages"``: the count and the word that agrees with it."""
    return f"{n} {singular if n == 1 else plural_form or singular + 's'}"


async def inbox_page(request: web.Request) -> web.StreamResponse:
    store = request.app[ikeys.store]
    text = request.query.get("q", "")
    start = _int_param(request, "start", 0, 10**9)
    errors: dict[str, str] = {}
    try:
        query = parse_query(text)
    except BadSearch as exc:
        # Said next to the search field, which keeps what was typed to shorten.
        errors["q"] = str(exc)
        query = Query(text=text.strip())
        messages: list[Stored] = []
        matches = 0
    else:
        messages, matches = await store.search(query, start, PAGE_SIZE)
    total, unread = await store.counts()
    cfg = request.app[keys.config].dev_inbox

    def page_link(offset: int) -> str:
        params = {"q": query.text} if query.text else {}
        if offset:
            params["start"] = str(offset)
        return inbox_path(request.app) + (f"?{urlencode(params)}" if params else "")

    ctx: dict[str, Any] = {
        "messages": messages,
        "query": query.text,
        "matches": matches,
        "total": total,
        "unread": unread,
        "start": start,
        "newer": page_link(max(0, start - PAGE_SIZE)) if start > 0 else None,
        "older": page_link(start + PAGE_SIZE) if start + PAGE_SIZE < matches else None,
        "max_messages": cfg.max_messages,
        "pruned": await store.pruned(),
        "smtp": request.app[ikeys.smtp_address],
        "when": when,
        "iso": iso,
        "plural": plural,
        "errors": errors,
        "max_query_length": MAX_QUERY_LENGTH,
    }
    response = await render(request, "inbox/list.html", ctx, status=400 if errors else 200)
    response.headers["Content-Security-Policy"] = LIST_CSP
    return response


def _gone() -> web.HTTPNotFound:
    return web.HTTPNotFound(text="No such message (it may have been deleted or pruned).")


async def _message_or_404(store: InboxStore, message_id: str) -> Stored:
    message = await store.get(message_id)
    if message is None:
        raise _gone()
    return message


async def message_page(request: web.Request) -> web.StreamResponse:
    store = request.app[ikeys.store]
    message_id = request.match_info["id"]
    if message_id == "latest":
        latest = await store.latest(parse_query(request.query.get("q", "")))
        if latest is None:
            raise web.HTTPNotFound(text="No message matches.")
        raise web.HTTPSeeOther(location=f"{inbox_path(request.app)}/{latest.id}")
    message = await _message_or_404(store, message_id)
    opened = await view_of(request.app, message)
    head = await store.raw_head(message_id, RAW_SHOWN)
    if opened is None or head is None:
        raise _gone()
    view = opened.view
    links = with_kinds(opened.links, request.app[keys.config])
    # A reset mail carries its link in both the text and the HTML part: one panel per URL.
    reset_urls = list(dict.fromkeys(link.url for link in links if link.kind == "reset"))
    # Each panel checks a token and asks the ledger; a real reset mail has one link.
    resets = [await reset_info(request.app, url) for url in reset_urls[:RESET_PANELS]]
    if not message.read:
        changed = await store.set_read([message.id], True)
        if changed:
            await publish_change(request.app, "read", {"IDs": changed, "Read": True})
    raw, size = head
    ctx: dict[str, Any] = {
        "m": message,
        "people": opened.people,
        "people_shown": PEOPLE_SHOWN,
        "view": view,
        "srcdoc": (
            iframe_document(view.html, message.id, view.inline, inbox_path(request.app))
            if view.html
            else ""
        ),
        "links": links,
        "resets": resets,
        "raw_text": raw.decode("utf-8", "replace"),
        "raw_truncated": size > RAW_SHOWN,
        "when": when,
        "iso": iso,
        "plural": plural,
    }
    response = await render(request, "inbox/message.html", ctx)
    response.headers["Content-Security-Policy"] = MESSAGE_CSP
    response.headers["X-Frame-Options"] = "DENY"
    return response


async def download_eml(request: web.Request) -> web.StreamResponse:
    raw = await request.app[ikeys.store].raw(request.match_info["id"])
    if raw is None:
        raise _gone()
    return web.Response(
        body=raw,
        content_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="message-{request.match_info["id"]}.eml"'
        },
    )


async def delete_message(request: web.Request) -> web.StreamResponse:
    store = request.app[ikeys.store]
    message_id = request.match_info["id"]
    if await store.delete([message_id]):
        await publish_change(request.app, "delete", {"IDs": [message_id]})
    raise web.HTTPSeeOther(location=inbox_path(request.app))


async def delete_all(request: web.Request) -> web.StreamResponse:
    store = request.app[ikeys.store]
    form = await request.post()
    text = form.get("q")
    query = parse_query(text if isinstance(text, str) else "")
    await store.delete(None if query.is_empty else query)
    await publish_change(request.app, "delete", {"IDs": None})
    raise web.HTTPSeeOther(location=inbox_path(request.app))
