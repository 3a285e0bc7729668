"""The application factory: ``create_app(config)`` wires every part.

Each long-lived resource has one cleanup context, appended in dependency
order (hashing threads → database → sign-in limits → dev inbox → outbox worker
→ webhook sender → request processor → retention); aiohttp tears them down in reverse, so
shutdown mirrors startup: no new work is taken, in-flight mail gets its grace
period, then the sink and the database close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_session import session_middleware

from . import keys
from .assets import configure, environment_options, template_dirs
from .config import Config
from .hash_queue import HashQueue
from .i18n import language_middleware
from .instance import new_instance_id
from .login_guard import LoginGuard
from .login_timing import FailureTiming
from .logs import install_redaction
from .loopmon import loop_monitor_ctx
from .metrics import Metrics
from .middlewares import (
    allowed_hosts_middleware,
    csrf_middleware,
    errors_middleware,
    security_headers,
)
from .outbox import (
    OutboxWorker,
    WebhookEvents,
    WebhookSender,
    WebhookWorker,
    client_session,
)
from .passwords import Hasher, hash_kind, hashing_threads
from .reset.compose import MailComposer
from .reset.intake import Intake
from .reset.processor import RequestProcessor
from .reset.tokens import TokenCodec, TokenLedger
from .retention import retention_ctx
from .routes import setup_routes
from .session_store import SessionStore
from .sessions import cookie_storage
from .storage.open import open_storage

log = logging.getLogger(__name__)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """The storage: resetd's database (and an app's users table, when
    configured), every store in it, on the app's clock."""
    cfg = app[keys.config]
    storage = await open_storage(
        cfg.database, cfg.users, app[keys.instance_id], clock=app[keys.clock]
    )
    app[keys.storage] = storage
    app[keys.users] = storage.accounts
    app[keys.ledger] = TokenLedger(storage.ledger, storage.now)
    app[keys.outbox_store] = storage.outbox
    app[keys.audit] = storage.audit
    app[keys.sessions] = SessionStore(storage.sessions, cfg.server, app[keys.clock])
    yield
    await storage.close()


async def hashing_ctx(app: web.Application) -> AsyncIterator[None]:
    """The password hasher, and the threads it runs in with the queue that gives
    them out (resetd/hash_queue.py), for the app's lifetime."""
    cfg = app[keys.config]
    # On exit: hashes under way finish, threads end.
    with HashQueue(hashing_threads(), cfg.limits.logins_in_progress) as queue:
        app[keys.hash_queue] = queue
        app[keys.hasher] = Hasher(cfg.passwords, cfg.users.effective_hash_format, queue)
        yield


async def signin_ctx(app: web.Application) -> AsyncIterator[None]:
    """The limits in front of sign-in, with failure timing measured on the
    kinds of hash the account store holds (see resetd/login_timing.py)."""
    cfg = app[keys.config]
    timing = FailureTiming()
    if cfg.server.login_pages:
        samples = await app[keys.users].hash_samples(hash_kind)
        await timing.calibrate(app[keys.hasher], samples)
    app[keys.login_guard] = LoginGuard(
        cfg.limits, app[keys.storage].limits, timing, app[keys.clock], app[keys.hash_queue]
    )
    yield


def relay_address(app: web.Application) -> tuple[str, int]:
    """Where mail goes: [mail] server:port, or the dev inbox's real port when
    [mail] points at the inbox's configured address (port 0 in tests)."""
    cfg = app[keys.config]
    if cfg.relay_is_inbox:
        from .inbox import smtp_address

        return smtp_address(app)
    return cfg.mail.server, cfg.mail.port


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    worker = OutboxWorker(
        app[keys.outbox_store],
        app[keys.config].mail,
        lambda: relay_address(app),
        metrics=app[keys.metrics],
    )
    app[keys.outbox_worker] = worker
    await worker.start()
    yield
    await worker.stop()


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The HTTP client session events go out through, and the worker that sends
    the outbox's webhook events with it (only when [webhooks] url is set)."""
    cfg = app[keys.config]
    async with client_session(cfg.webhooks) as session:
        sender = WebhookSender(session, cfg.webhooks)
        worker = WebhookWorker(app[keys.outbox_store], cfg.webhooks, cfg.mail, sender)
        app[keys.webhook_worker] = worker
        await worker.start()
        yield
        await worker.stop()


def wake_outbox(app: web.Application) -> None:
    """Something was committed to the outbox: its workers look now."""
    app[keys.outbox_worker].wake()
    webhooks = app.get(keys.webhook_worker)
    if webhooks is not None:
        webhooks.wake()


async def requests_ctx(app: web.Application) -> AsyncIterator[None]:
    """The reset-request intake (group commit) and the processor behind it."""
    storage = app[keys.storage]
    processor = RequestProcessor(
        storage,
        app[keys.users],
        app[keys.codec],
        app[keys.composer],
        app[keys.wake_outbox],
        app[keys.webhook_events],
        metrics=app[keys.metrics],
    )
    intake = Intake(storage, app[keys.config].limits, processor.wake)
    app[keys.intake] = intake
    await processor.start()
    await intake.start()
    yield
    await intake.stop()
    await processor.stop()


def create_app(config: Config, *, clock: Callable[[], float] = time.time) -> web.Application:
    install_redaction()
    middlewares: list[Middleware] = [
        # Outermost: error pages, and everything else, speak the request's language.
        language_middleware(config.languages),
        session_middleware(cookie_storage(config)),
        errors_middleware,
    ]
    if config.dev_inbox.enabled:
        from .inbox.access import inbox_gate

        # Before the allowed hosts: the inbox's own rules are stricter, and a
        # request from elsewhere gets its 403 whatever allowed_hosts says.
        middlewares.append(inbox_gate)
    middlewares += [allowed_hosts_middleware(config), csrf_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[keys.config] = config
    app[keys.clock] = clock
    app[keys.instance_id] = new_instance_id()
    app[keys.metrics] = Metrics()
    app[keys.json_prefixes] = ()  # setup_routes: each API adds its own
    app[keys.api_prefixes] = ()
    app[keys.csrf_exempt_prefixes] = ()
    app[keys.codec] = TokenCodec(
        config.server.secret_key, config.server.secret_key_fallbacks, config.reset.token_ttl
    )
    app[keys.composer] = MailComposer(
        config.mail.sender,
        config.server.public_url,
        config.reset.link_url,
        site_name=config.server.site_name,
        templates=template_dirs(config.server),
    )
    app[keys.webhook_events] = WebhookEvents(config.webhooks)
    app[keys.wake_outbox] = lambda: wake_outbox(app)
    env = configure(aiohttp_jinja2.setup(app, **environment_options(config.server)), config.server)
    # Every page's links, forms and assets start with it: "" or e.g. "/auth".
    env.globals["prefix"] = config.prefix
    app.on_response_prepare.append(security_headers)

    app.cleanup_ctx.append(loop_monitor_ctx)
    app.cleanup_ctx.append(hashing_ctx)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(signin_ctx)
    if config.dev_inbox.enabled:
        from .inbox import inbox_ctx

        app.cleanup_ctx.append(inbox_ctx)
    app.cleanup_ctx.append(outbox_ctx)
    if config.webhooks.enabled:
        app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(requests_ctx)
    app.cleanup_ctx.append(retention_ctx)
    setup_routes(app)
    return app
