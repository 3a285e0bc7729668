"""``GET /readyz``: whether this process can do its work, and how its relay is doing.

Always 200 while the database answers, even when the relay is not: reset
requests are still taken and their mail waits in the outbox, so taking this
instance out of a load balancer would only make things worse. ``status`` says
``degraded`` then, and ``relay`` says why. The relay's address, error and hint
are shown to local requests only, by the rule the dev inbox applies
(:func:`~resetd.hosts.is_local_request`): a loopback peer, no proxy header, a
loopback Host, no other site's Origin. A reverse proxy on this host connects
from loopback for whoever is behind it, listed in ``trusted_proxies`` or not.
"""

from __future__ import annotations

import sqlite3

from aiohttp import web

from . import keys
from .hosts import is_local_request

_PRIVATE = ("address", "error", "hint")


async def readyz(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[keys.db].fetchone("SELECT 1")
    except sqlite3.Error:
        return web.json_response({"status": "unavailable", "database": "error"}, status=503)
    relay = request.app[keys.outbox_worker].relay_status()
    if not is_local_request(request):
        relay = {k: v for k, v in relay.items() if k not in _PRIVATE}
    healthy = relay["state"] in ("unknown", "ok")
    return web.json_response(
        {"status": "ok" if healthy else "degraded", "database": "ok", "relay": relay},
        headers={"Cache-Control": "no-store"},
    )
