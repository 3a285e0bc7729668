"""Cross-origin calls to the JSON API: exactly the origins in ``[api] cors_origins``.

A page of a listed origin gets ``Access-Control-Allow-Origin`` naming it (never
``*``), and its preflight (``OPTIONS``) is answered for ``POST`` with a
``Content-Type`` header. Every API answer carries ``Vary: Origin``, so no
cache hands one origin's answer to another. Credentials are never allowed:
the API reads no cookie.

A request that carries an ``Origin`` other than resetd's own or a listed one
is refused (403, ``origin_not_allowed``) before anything is queued or
changed: a browser would hide the answer from that page anyway, and refusing
it keeps other sites' pages from using the API blind.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from .. import keys
from ..errors import ApiError
from ..hosts import serialized_origin

ALLOWED_METHODS = "POST"
ALLOWED_HEADERS = frozenset({"content-type"})
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may keep a preflight's answer


def own_origin(request: web.Request) -> str | None:
    """The origin of ``[server] public_url``: pages of resetd's own site."""
    parts = urlsplit(request.app[keys.config].server.public_url)
    return serialized_origin(f"{parts.scheme}://{parts.netloc}")


def listed_origin(request: web.Request) -> str | None:
    """The request's ``Origin`` when ``[api] cors_origins`` lists it, else None."""
    origin = request.headers.get("Origin")
    if origin is not None and origin in request.app[keys.config].api.cors_origins:
        return origin
    return None


def check_origin(request: web.Request) -> None:
    """Raises ApiError (403) for a page of an origin that may not call the API."""
    origin = request.headers.get("Origin")
    if origin is None or origin == own_origin(request) or listed_origin(request):
        return
    raise ApiError.one(
        403,
        "origin_not_allowed",
        "Pages of this origin may not call this API (see [api] cors_origins).",
    )


async def preflight(request: web.Request) -> web.StreamResponse:
    """``OPTIONS``: may this origin POST JSON here? 204 with the CORS headers, or 403."""
    origin = listed_origin(request)
    method = request.headers.get("Access-Control-Request-Method", "")
    asked = request.headers.get("Access-Control-Request-Headers", "")
    headers = {h.strip().lower() for h in asked.split(",") if h.strip()}
    if origin is None or method != ALLOWED_METHODS or not headers <= ALLOWED_HEADERS:
        raise ApiError.one(
            403,
            "origin_not_allowed" if origin is None else "preflight_refused",
            "This cross-origin request is not allowed: POST with a JSON body from an origin "
            "in [api] cors_origins only.",
        )
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        },
    )


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer under the API's path, errors too."""
    if not request.path.startswith(request.app[keys.api_prefixes]):
        return
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Origin"
    origin = listed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        # A front end reads how long to wait after a 429 or 503.
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
