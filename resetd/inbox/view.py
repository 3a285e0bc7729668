"""Mailpit's render routes: ``/dev/inbox/view/{ID}.html`` and ``/view/{ID}.txt``.

Cypress helpers and ``mailpit-api``'s ``renderMessageHTML``/``renderMessageText``
fetch a message's HTML or text body alone; ``{ID}`` may be ``latest``
(optionally ``?query=``), and ``/view/{ID}`` without a suffix opens the
message's page. The HTML is the mail's own markup, ``cid:`` images pointed at
the part URLs, and nothing else changed, so a test can compare it
(``?embed=1`` adds ``<base target="_blank">``).

Served from the inbox's origin, that markup must never run as the inbox: the
response's CSP ``sandbox`` (without ``allow-scripts`` or ``allow-same-origin``)
gives the document an opaque origin and no script, as the message page's
``<iframe sandbox>`` does, and it loads nothing from elsewhere.
"""

from __future__ import annotations

from aiohttp import web

from . import keys as ikeys
from .access import inbox_path
from .message_view import link_inline_parts
from .opened import view_of
from .schema import Stored
from .search import parse_query

# No script (sandbox without allow-scripts), an opaque origin, images only from
# the inbox's part URLs; framed only by the inbox's own pages.
VIEW_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)


async def _message(request: web.Request, message_id: str) -> Stored:
    store = request.app[ikeys.store]
    if message_id == "latest":
        found = await store.latest(parse_query(request.query.get("query", "")))
    else:
        found = await store.get(message_id)
    if found is None:
        raise web.HTTPNotFound(text="Message not found")
    return found


async def render_view(request: web.Request) -> web.StreamResponse:
    """``{ID}.html``: the HTML body (404 when there is none); ``{ID}.txt``: the text body."""
    name = request.match_info["name"]
    stem, dot, suffix = name.rpartition(".")
    if not dot or suffix not in ("html", "txt"):
        message = await _message(request, name)
        raise web.HTTPFound(location=f"{inbox_path(request.app)}/{message.id}")
    message = await _message(request, stem)
    opened = await view_of(request.app, message)
    if opened is None:
        raise web.HTTPNotFound(text="Message not found")
    view = opened.view
    if suffix == "txt":
        return web.Response(text=view.text, content_type="text/plain", charset="utf-8")
    if not view.html:
        raise web.HTTPNotFound(text="This message does not contain a HTML part")
    html = link_inline_parts(
        view.html, message.id, [*view.inline, *view.attachments], inbox_path(request.app)
    )
    if request.query.get("embed") == "1":
        # Mailpit's embed mode: links open in a new tab (its height script is left out:
        # no script runs here).
        html = '<base target="_blank">' + html
    return web.Response(
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": VIEW_CSP,
            "X-Frame-Options": "SAMEORIGIN",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )
