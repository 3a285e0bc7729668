"""``resetd serve``: start the app, print where it is, run until SIGINT or SIGTERM.

Start-up problems (a taken port, a bad ``[users]`` mapping) are one line on
stderr and exit code 2; a signal stops taking requests, gives in-flight mail
its grace period and exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from typing import Any

import jinja2
from aiohttp import web

from . import keys
from .assets import render_problem
from .config import Config, ConfigError
from .outbox.webhook_events import destination
from .render import warm_templates
from .storage.open import open_storage

log = logging.getLogger("resetd")

# How long a thread that wants the GIL waits before the holder must hand it over
# (CPython's default is 5 ms). SQLite worker threads take the GIL back after
# every statement step; behind a busy event loop each of those waits stretched
# the request intake's group commit, and with it every reset request. At 1 ms
# the reset-request benchmark went from ~1,450 to ~1,600 requests/s.
SWITCH_INTERVAL = 0.001


# Seconds a client whose request we answered before reading all of its body
# (408, 413, a 404 to a POST) may go on sending before its connection closes;
# aiohttp's default of 10 let each such client hold a connection that long.
LINGERING_TIME = 2.0


def connection_limits(cfg: Config) -> dict[str, Any]:
    """aiohttp's per-connection bounds, for the runner.

    aiohttp has no timer for reading a request's headers as such, but its
    keep-alive timer starts when a connection opens and again after each
    answer, and closes the connection if no complete request has arrived by
    then, however much of one is trickling in: with ``keepalive_timeout`` set to
    ``[server] header_timeout``, a client that sends its headers slowly (or
    nothing) is dropped after that many seconds, and so is an idle keep-alive
    connection. The body is bounded by ``[server] body_timeout`` where it is
    read (resetd/bodies.py). The size limits are aiohttp's defaults, spelled
    out: 8,190 bytes per request line and header, 128 headers.
    ``handler_cancellation`` stays off: a handler cancelled because its
    client left could stop between two steps of a reset.
    """
    return {
        "keepalive_timeout": cfg.server.header_timeout,
        "lingering_time": LINGERING_TIME,
        "max_line_size": 8190,
        "max_field_size": 8190,
        "max_headers": 128,
    }


def _banner(app: web.Application, cfg: Config, port: int, counts: dict[str, int]) -> str:
    host = cfg.server.host
    shown = f"[{host}]" if ":" in host else host
    name = cfg.server.site_name
    lines = [
        "",
        "  resetd is running" + ("" if name == "resetd" else f" for {name}"),
        f"    Sign in           http://{shown}:{port}{cfg.prefix}/login",
        f"    Forgot password   http://{shown}:{port}{cfg.prefix}/reset_password_request",
        "    Links in mail     "
        + (cfg.reset.link_url.replace("{token}", "…") or f"{cfg.public_origin}/reset_password/…"),
        f"    JSON API          http://{shown}:{port}{cfg.prefix}/api/v1/openapi.json",
    ]
    if cfg.dev_inbox.enabled:
        from .inbox import smtp_address, tls_banner

        smtp_host, smtp_port = smtp_address(app)
        lines += [
            f"    Dev inbox         http://{shown}:{port}{cfg.prefix}/dev/inbox",
            f"    Dev inbox SMTP    {smtp_host}:{smtp_port}",
            *tls_banner(app),
        ]
    relay = f"{cfg.mail.server}:{cfg.mail.port}"
    if cfg.relay_is_inbox:
        relay += " (the dev inbox)"
    lines.append(f"    Mail relay        {relay}")
    if cfg.webhooks.enabled:
        events = ", ".join(cfg.webhooks.events)
        lines.append(f"    Webhooks          {destination(cfg.webhooks.url)} ({events})")
    lines += [
        "    Database          "
        + (cfg.database.path if cfg.database.engine == "sqlite" else cfg.database.redacted_url()),
        f"    Outbox            {counts['pending']} pending, {counts['failed']} failed,"
        f" {counts['sent']} sent",
        "  Press Ctrl+C to stop.",
        "",
    ]
    return "\n".join(lines)


async def serve(cfg: Config) -> int:
    from .app import create_app

    sys.setswitchinterval(SWITCH_INTERVAL)
    app = create_app(cfg)
    # Compiled now, before the loop serves anyone, not by each one's first user;
    # a template that does not compile, or a mail that cannot be composed from
    # sample values, stops the start (ConfigError: exit 2, naming file and line).
    warm_templates(app)
    try:
        app[keys.composer].warm(cfg.languages)
    except jinja2.TemplateError as exc:
        raise render_problem(exc) from None
    runner = web.AppRunner(app, **connection_limits(cfg))
    try:
        await runner.setup()  # runs the cleanup contexts' startup halves
    except (OSError, ConfigError) as exc:  # a taken SMTP port, a bad [users] mapping …
        await runner.cleanup()
        print(
            f"resetd: {exc}" if isinstance(exc, ConfigError) else f"resetd: cannot start: {exc}",
            file=sys.stderr,
        )
        return 2
    site = web.TCPSite(runner, cfg.server.host, cfg.server.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        print(
            f"resetd: cannot listen on {cfg.server.host}:{cfg.server.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    port = cfg.server.port
    for sock_addr in runner.addresses:
        port = int(sock_addr[1])
        break
    counts = await app[keys.outbox_store].counts()
    print(_banner(app, cfg, port, counts), flush=True)
    # Everything built so far (modules, templates, the app) lives as long as
    # the process; a full collection walked all of it, stalling the loop for
    # 30-40 ms every few seconds under load. Frozen, they are never walked.
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: no new requests; letting in-flight mail finish")
    await runner.cleanup()
    storage = await open_storage(cfg.database)
    try:
        counts = await storage.outbox.counts()
    finally:
        await storage.close()
    log.info("stopped; %d mail(s) pending for the next start", counts["pending"])
    return 0
