"""The one route table. Inbox routes exist only when the dev inbox is enabled."""

from __future__ import annotations

from aiohttp import web

from . import health, keys, login
from .assets import STATIC_DIR, static_dirs, static_handler
from .reset.confirm import set_password, token_link
from .reset.request import request_page


def setup_routes(app: web.Application) -> None:
    cfg = app[keys.config]
    r = app.router
    if cfg.server.login_pages:
        r.add_get("/", login.index, name="index")
        r.add_route("*", "/login", login.login, name="login")
        r.add_post("/logout", login.logout, name="logout")
    r.add_route("*", "/reset_password_request", request_page, name="reset_request")
    r.add_route("*", "/reset_password/{token}", token_link, name="reset_link")
    r.add_route("*", "/reset_password", set_password, name="reset_form")
    if cfg.server.static:
        r.add_get("/static/{filename:.+}", static_handler(static_dirs(cfg.server)), name="static")
    else:
        r.add_static("/static", STATIC_DIR, name="static")
    r.add_get("/healthz", health.healthz, name="healthz")
    r.add_get("/readyz", health.readyz, name="readyz")
    r.add_get("/metrics", health.metrics, name="metrics")
    if cfg.dev_inbox.enabled:
        from .inbox import add_inbox_routes

        add_inbox_routes(app)
