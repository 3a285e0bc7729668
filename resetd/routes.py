"""The one route table. Inbox routes exist only when the dev inbox is enabled.

Every route lives under ``Config.prefix``, the path of ``[server] public_url``
(``""`` by default, ``/auth`` for ``https://www.example.com/auth``), so a
proxy forwards that path unchanged; nothing is answered outside it.
"""

from __future__ import annotations

from aiohttp import web

from . import health, keys, login
from .api import add_api_routes
from .assets import STATIC_DIR, static_dirs, static_handler
from .reset.confirm import set_password, token_link
from .reset.request import request_page


async def _to_index(request: web.Request) -> web.StreamResponse:
    """``/auth`` without its slash: the index is ``/auth/``."""
    raise web.HTTPFound(location=request.app[keys.config].prefix + "/")


def setup_routes(app: web.Application) -> None:
    cfg = app[keys.config]
    p = cfg.prefix
    r = app.router
    if cfg.server.login_pages:
        r.add_get(p + "/", login.index, name="index")
        if p:
            r.add_get(p, _to_index)
        r.add_route("*", p + "/login", login.login, name="login")
        r.add_post(p + "/logout", login.logout, name="logout")
    r.add_route("*", p + "/reset_password_request", request_page, name="reset_request")
    r.add_route("*", p + "/reset_password/{token}", token_link, name="reset_link")
    r.add_route("*", p + "/reset_password", set_password, name="reset_form")
    if cfg.server.static:
        r.add_get(
            p + "/static/{filename:.+}", static_handler(static_dirs(cfg.server)), name="static"
        )
    else:
        r.add_static(p + "/static", STATIC_DIR, name="static")
    r.add_get(p + "/healthz", health.healthz, name="healthz")
    r.add_get(p + "/readyz", health.readyz, name="readyz")
    r.add_get(p + "/metrics", health.metrics, name="metrics")
    add_api_routes(app)
    if cfg.dev_inbox.enabled:
        from .inbox import add_inbox_routes

        add_inbox_routes(app)
