"""The dev inbox: an in-process SMTP sink, its SQLite store, pages and a Mailpit-style API.

:func:`inbox_ctx` is the cleanup context (store → parser process → writer →
SMTP server, torn down in reverse); :func:`add_inbox_routes` adds the routes
and registers the API's rules with the app's middlewares. Who may reach them
is decided before any of them runs, by the middleware
:func:`~resetd.inbox.access.inbox_gate` for every path under ``/dev/inbox``.

The modules, in the order a mail travels through them:

Ingest side: SMTP in, one stored row per mail.
    sink         aiosmtpd in the app's loop: the SMTP dialogue, the connection cap
    smtp_auth    who may hand the sink mail (AUTH with the inbox's password)
    tls          STARTTLS and SMTPS: the developer's certificate or a self-signed one
    smtp_data    the DATA section read in bulk
    spool        a large DATA section kept in a temporary file while it arrives
    capture      the handler: the recipient cap, the hand-off to the writer
    writer       one task storing in batches, publishing to the hub
    digest       what a mail becomes, once: summary, view, links
    quick_mime   the common case cut on the loop, linear and bounded
    parse        the stdlib parser, for the rest …
    parser       … in a separate process, with a time limit per mail
    parser_child the process's own side: a job in, an answer out
    summary      the summary fields: what the list, the search and the API show
    headertext   header text fit to show, in time linear in its length
    addresses    address-list headers, in one linear pass
    html_scan    HTML bodies' text and links, in one linear pass
    ingest       the rows built on the loop, the INSERTs in a worker thread

Read side: what was stored, and what changed.
    schema       the inbox database's tables and its rows as Python values
    store        list, search, flags, delete, counts
    search       Mailpit's search syntax → a parameterised SQL condition
    search_values  its filters' values: time zones, dates, sizes
    tags         tag names cleaned as Mailpit does; reading and setting them
    message_view one message's bodies, headers and parts (built at ingest)
    stored_view  that view as its row, and back
    opened       one stored message with its view
    links        a message's links, and the state of any reset link among them
    unsubscribe  its List-Unsubscribe header, checked as Mailpit checks it
    events       the hub: live updates fanned out to subscribers
    webhook      each new message's summary POSTed to [dev_inbox] webhook_url

Web side: who may look, and what they see.
    keys         the inbox's typed app keys
    access       the gate: this machine only, or the password
    guesses      wrong passwords counted, per client and overall (HTTP and SMTP)
    pages        the list, one message, delete, the .eml download
    api          the Mailpit-v1 API: lists and changes
    api_message  one message through the API
    api_tags     the tag calls, and Mailpit's web UI configuration
    release      a captured mail relayed to allowed real recipients
    send         Mailpit's POST send: a JSON message built and stored
    view         Mailpit's /view/{ID}.html and .txt: one body alone, sandboxed
    stream       the live updates as Server-Sent Events; publish_change
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web

from .. import keys as app_keys
from ..db import Database
from . import api, api_message, api_tags, events, pages, release, send, stream, tls, view
from . import keys as ikeys
from .access import inbox_path
from .capture import SinkHandler, SinkStats
from .guesses import GuessThrottle
from .parser import ParserProcess
from .schema import INBOX_MIGRATIONS
from .sink import start_sink
from .smtp_auth import SinkLogin
from .spool import Spooler, unmap_large_frees
from .store import InboxStore
from .webhook import running_webhook
from .writer import InboxWriter

__all__ = ["add_inbox_routes", "inbox_ctx", "smtp_address", "tls_banner"]


async def inbox_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the store, start the writer and the SMTP sink; close all three after."""
    cfg = app[app_keys.config].dev_inbox
    async with AsyncExitStack() as stack:
        db = await Database.open(cfg.path, migrations=INBOX_MIGRATIONS)
        store = InboxStore(db, cfg.max_messages)
        stack.push_async_callback(store.close)
        hub = events.InboxEvents()
        stack.callback(hub.close)
        parser = ParserProcess(cfg.parse_timeout)
        stack.push_async_callback(parser.close)
        writer = InboxWriter(store, hub, parser)
        await writer.start()
        stack.push_async_callback(writer.stop)
        hook = await stack.enter_async_context(running_webhook(cfg.webhook_url, hub))
        stats = SinkStats()
        guesses = GuessThrottle()
        tls_context, tls_info = await tls.server_context(cfg) if cfg.tls else (None, None)
        unmap_large_frees()
        # Large messages spool beside the inbox database, not in a /tmp that may be RAM.
        spooler = Spooler(os.path.dirname(cfg.path) or os.curdir)
        handler = SinkHandler(writer, stats, cfg.max_recipients, spooler)
        login = SinkLogin.for_config(cfg, guesses)
        sink = await start_sink(cfg, handler, tls_context, login)
        stack.push_async_callback(sink.close)
        app[ikeys.store] = store
        app[ikeys.events] = hub
        app[ikeys.writer] = writer
        app[ikeys.parser] = parser
        app[ikeys.stats] = stats
        app[ikeys.guesses] = guesses
        app[ikeys.webhook] = hook
        app[ikeys.smtp_address] = sink.address
        app[ikeys.smtps_address] = sink.smtps_address
        app[ikeys.tls_info] = tls_info
        yield


def smtp_address(app: web.Application) -> tuple[str, int]:
    """(host, port) the inbox's SMTP sink bound: its real port when configured as 0.

    Set while the app runs (after :func:`inbox_ctx` started the sink).
    """
    return app[ikeys.smtp_address]


def tls_banner(app: web.Application) -> list[str]:
    """The banner's lines about the sink's TLS: SMTPS, the certificate and, for a
    self-signed one, how to trust it. Empty when the sink speaks no TLS."""
    info = app[ikeys.tls_info]
    if info is None:
        return []
    lines = []
    smtps = app[ikeys.smtps_address]
    if smtps is not None:
        lines.append(f"    Dev inbox SMTPS   {smtps[0]}:{smtps[1]} (implicit TLS)")
    kind = "self-signed" if info.self_signed else "[dev_inbox] tls_cert"
    lines.append(f"    Dev inbox TLS     {info.cert_path} ({kind})")
    lines.append(f"      SHA-256         {info.fingerprint}")
    if info.self_signed:
        lines.append(
            "      To verify it, give clients that file as their CA file (or set"
            " [dev_inbox] tls_cert / tls_key to a certificate they trust, e.g. mkcert's)"
        )
    return lines


async def _end_streams(app: web.Application) -> None:
    """on_shutdown: end live streams and long-polls so shutdown is not held up."""
    hub = app.get(ikeys.events)
    if hub is not None:
        hub.close()


def add_inbox_routes(app: web.Application) -> None:
    """The inbox's routes under ``/dev/inbox`` (below public_url's path), and
    its API's rules for the app's middlewares."""
    base = inbox_path(app)
    api_prefix = f"{base}/api/"
    # The API answers JSON, errors too, and its clients (Mailpit's) send JSON
    # with no form's CSRF token: inbox_gate decides who may call it.
    app[app_keys.json_prefixes] += (api_prefix,)
    app[app_keys.csrf_exempt_prefixes] += (api_prefix,)
    r = app.router
    v1 = f"{api_prefix}v1"
    r.add_get(base, pages.inbox_page, name="inbox")
    r.add_get(f"{base}/events", stream.event_stream, name="inbox_events")
    r.add_get(f"{base}/livez", api.livez, name="inbox_livez")
    r.add_get(f"{base}/readyz", api.readyz, name="inbox_readyz")
    r.add_post(f"{base}/delete", pages.delete_all, name="inbox_delete_all")
    r.add_get(f"{base}/view/{{name}}", view.render_view, name="inbox_view")
    r.add_get(f"{base}/{{id}}", pages.message_page, name="inbox_message")
    r.add_get(f"{base}/{{id}}/download", pages.download_eml, name="inbox_download")
    r.add_post(f"{base}/{{id}}/delete", pages.delete_message, name="inbox_delete")
    r.add_get(f"{v1}/messages", api.list_messages, name="inbox_api_messages")
    r.add_put(f"{v1}/messages", api.set_read)
    r.add_delete(f"{v1}/messages", api.delete_messages)
    r.add_get(f"{v1}/search", api.search_messages, name="inbox_api_search")
    r.add_delete(f"{v1}/search", api.delete_search)
    r.add_get(f"{v1}/message/{{id}}", api_message.get_message, name="inbox_api_message")
    r.add_get(f"{v1}/message/{{id}}/headers", api_message.get_headers)
    r.add_get(f"{v1}/message/{{id}}/raw", api_message.get_raw)
    r.add_get(f"{v1}/message/{{id}}/part/{{part}}", api_message.get_part)
    r.add_get(f"{v1}/message/{{id}}/links", api_message.get_links)
    r.add_post(f"{v1}/send", send.send_message, name="inbox_api_send")
    r.add_post(f"{v1}/message/{{id}}/release", release.release_message)
    r.add_get(f"{v1}/info", api.info, name="inbox_api_info")
    r.add_get(f"{v1}/webui", api_tags.webui)
    r.add_get(f"{v1}/tags", api_tags.list_tags)
    r.add_put(f"{v1}/tags", api_tags.put_tags)
    r.add_put(f"{v1}/tags/{{tag}}", api_tags.rename)
    r.add_delete(f"{v1}/tags/{{tag}}", api_tags.delete)
    app.on_shutdown.append(_end_streams)
