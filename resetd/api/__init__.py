"""The JSON API, for front ends that are not server-rendered: ``/api/v1`` under
public_url's path.

    v1            POST reset-requests, POST password-resets, GET openapi.json
    cors          who may call it from a page of another origin ([api] cors_origins)
    openapi.json  the API's OpenAPI 3.1 description, written by hand

It takes no cookies, so it needs no CSRF token: it answers only
``application/json`` bodies, which no cross-site form can send and no browser
sends across origins without a preflight that :mod:`.cors` answers. Its errors
are ``{"errors": [{"code", "message"[, "field"]}]}`` (:class:`~resetd.errors.ApiError`).
"""

from __future__ import annotations

from aiohttp import web

from .. import keys
from . import cors, v1

__all__ = ["API_PATH", "add_api_routes"]

API_PATH = "/api/v1"


def add_api_routes(app: web.Application) -> None:
    """The API's routes, and its rules for the app's middlewares."""
    base = app[keys.config].prefix + API_PATH
    app[keys.api_prefixes] += (base + "/",)
    app[keys.csrf_exempt_prefixes] += (base + "/",)
    r = app.router
    for path, handler, name in (
        ("/reset-requests", v1.reset_requests, "api_reset_requests"),
        ("/password-resets", v1.password_resets, "api_password_resets"),
    ):
        r.add_post(base + path, handler, name=name)
        r.add_route("OPTIONS", base + path, cors.preflight)
    r.add_get(base + "/openapi.json", v1.openapi, name="api_openapi")
    app.on_response_prepare.append(cors.cors_headers)
