"""``/healthz``, ``/readyz`` and ``/metrics``: for load balancers and monitoring.

``GET /healthz`` says the process is alive: 200 at once, no database, no
relay, so a load balancer's liveness check never piles up behind a slow disk.

``GET /readyz``: whether this process can do its work, and how its relay is
doing. 503 when the database does not answer, its schema is not the one this
resetd knows (another version migrated it), or the outbox worker has stopped.

Otherwise 200, even when the relay is not answering: reset requests are
still taken and their mail waits in the outbox, so taking this instance out
of a load balancer would only make things worse. ``status`` says
``degraded`` then, and ``relay`` says why. The relay's address, error and hint
are shown to local requests only, by the rule the dev inbox applies
(:func:`~resetd.hosts.is_local_request`): a loopback peer, no proxy header, a
loopback Host, no other site's Origin. A reverse proxy on this host connects
from loopback for whoever is behind it, listed in ``trusted_proxies`` or not.

``GET /metrics``: Prometheus' text format (:mod:`resetd.metrics`), served by
the same local rule and, when ``[metrics] token`` is set, to requests that
carry it as a bearer token: never to anyone else, since counts of sign-ins
and refusals tell an outsider how an attack is going.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from . import keys
from .hosts import is_local_request

_PRIVATE = ("address", "error", "hint")


_NO_STORE = {"Cache-Control": "no-store"}


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"}, headers=_NO_STORE)


async def readyz(request: web.Request) -> web.StreamResponse:
    app = request.app
    storage = app[keys.storage]
    try:
        migrations = "current" if await storage.schema_is_current() else "mismatch"
    except storage.errors.error:
        down = {"status": "unavailable", "database": "error"}
        return web.json_response(down, status=503, headers=_NO_STORE)
    worker = app[keys.outbox_worker]
    outbox = "running" if worker.running else "stopped"
    relay = worker.relay_status()
    if not is_local_request(request):
        relay = {k: v for k, v in relay.items() if k not in _PRIVATE}
    body: dict[str, object] = {
        "database": "ok",
        "migrations": migrations,
        "outbox": outbox,
        "relay": relay,
    }
    if migrations != "current" or outbox != "running":
        return web.json_response({"status": "unavailable", **body}, status=503, headers=_NO_STORE)
    healthy = relay["state"] in ("unknown", "ok")
    return web.json_response({"status": "ok" if healthy else "degraded", **body}, headers=_NO_STORE)


def may_see_metrics(request: web.Request, token: str) -> bool:
    """Local, or carrying ``[metrics] token`` as ``Authorization: Bearer``."""
    if is_local_request(request):
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics(request: web.Request) -> web.StreamResponse:
    app = request.app
    token = app[keys.config].metrics.token
    if not may_see_metrics(request, token):
        if token:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        raise web.HTTPForbidden()
    m = app[keys.metrics]
    backlog = await app[keys.outbox_store].backlog(await app[keys.storage].now())
    m.outbox_mails.labels("pending").set(backlog.pending)
    m.outbox_mails.labels("failed").set(backlog.failed)
    m.outbox_oldest.set(backlog.oldest_pending_age)
    queue = app[keys.hash_queue]
    m.hashing_waiting.set(queue.waiting)
    m.hashing_running.set(queue.running)
    return web.Response(
        body=generate_latest(m.registry),
        # The classic text format: what every Prometheus version reads.
        headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, **_NO_STORE},
    )
