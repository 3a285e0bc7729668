"""Every ``web.AppKey`` of the application, typed, in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .config import Config
    from .hash_queue import HashQueue
    from .login_guard import LoginGuard
    from .metrics import Metrics
    from .outbox import OutboxWorker, WebhookEvents, WebhookWorker
    from .passwords import Hasher
    from .reset.compose import MailComposer
    from .reset.intake import Intake
    from .reset.tokens import TokenCodec, TokenLedger
    from .session_store import SessionStore
    from .storage import Storage
    from .storage.audit import AuditStore
    from .storage.outbox import OutboxStore
    from .users import AccountStore, User

config: web.AppKey[Config] = web.AppKey("config")
# The storage (resetd/storage/): every table, and the units of work across them.
storage: web.AppKey[Storage] = web.AppKey("storage")
users: web.AppKey[AccountStore] = web.AppKey("users")
hasher: web.AppKey[Hasher] = web.AppKey("hasher")
hash_queue: web.AppKey[HashQueue] = web.AppKey("hash_queue")
codec: web.AppKey[TokenCodec] = web.AppKey("codec")
ledger: web.AppKey[TokenLedger] = web.AppKey("ledger")
composer: web.AppKey[MailComposer] = web.AppKey("composer")
outbox_store: web.AppKey[OutboxStore] = web.AppKey("outbox_store")
outbox_worker: web.AppKey[OutboxWorker] = web.AppKey("outbox_worker")
# The events [webhooks] asks for (wants() is False for all when it is off), and
# the worker that sends them, present only when [webhooks] url is set.
webhook_events: web.AppKey[WebhookEvents] = web.AppKey("webhook_events")
webhook_worker: web.AppKey[WebhookWorker] = web.AppKey("webhook_worker")
# Called after a commit that queued mail or events: the outbox's workers look now.
wake_outbox: web.AppKey[Callable[[], None]] = web.AppKey("wake_outbox")
intake: web.AppKey[Intake] = web.AppKey("intake")
audit: web.AppKey[AuditStore] = web.AppKey("audit")
sessions: web.AppKey[SessionStore] = web.AppKey("sessions")
login_guard: web.AppKey[LoginGuard] = web.AppKey("login_guard")
metrics: web.AppKey[Metrics] = web.AppKey("metrics")
# This process's instance id (resetd/instance.py): the owner named by its claims.
instance_id: web.AppKey[str] = web.AppKey("instance_id")
# Wall-clock seconds for session lifetimes and sign-in limits (time.time; tests
# pass a clock they move).
clock: web.AppKey[Callable[[], float]] = web.AppKey("clock")

# Path prefixes whose errors are JSON rather than pages, and those whose unsafe
# methods carry no form's CSRF token: each part that serves an API registers
# its own when it sets up its routes (the dev inbox, for /dev/inbox/api/).
json_prefixes: web.AppKey[tuple[str, ...]] = web.AppKey("json_prefixes")
# Those whose errors are the JSON API's {"errors": [{"code", "message"}]} (resetd/api/).
api_prefixes: web.AppKey[tuple[str, ...]] = web.AppKey("api_prefixes")
csrf_exempt_prefixes: web.AppKey[tuple[str, ...]] = web.AppKey("csrf_exempt_prefixes")

# The dev inbox's own keys are in resetd/inbox/keys.py.

# Per request: the signed-in user, looked up once.
request_user: web.RequestKey[User | None] = web.RequestKey("request_user")
