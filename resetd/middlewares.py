"""Cross-cutting request handling: error pages, allowed hosts, CSRF, security headers.

Every error a user or a client can cause becomes a clear page (or JSON under
the prefixes an API registers: the dev inbox's Mailpit-style ``{"Error": …}``
in ``keys.json_prefixes``, the JSON API's ``{"errors": [{"code", …}]}`` in
``keys.api_prefixes``) with the right status; unexpected exceptions are
logged with their traceback and answered with a plain 500 that reveals
nothing. The core knows no API's paths: each API registers its own, and
which need no CSRF form token. A request no route matches gets its 404 (or
405) before any CSRF check: nothing runs that a token would guard.
:mod:`resetd.errors` lists the exceptions and what each becomes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import keys
from .bodies import read_form
from .config import Config
from .errors import ApiError, BadSearch, CsrfFailure, FormError
from .hosts import NO_HOST, check_pattern, host_allowed, request_host
from .i18n import N_, _
from .login import refused_page
from .login_guard import SigninRefused
from .render import render
from .reset.confirm import token_rejected
from .reset.tokens import TokenInvalid
from .sessions import csrf_ok

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Error pages are in the language of the request: these and the messages handed
# to error_page (marked N_ where they are written) are translated there.
_TITLES = {
    400: (N_("Bad request"), N_("The request could not be understood.")),
    403: (N_("Forbidden"), N_("You are not allowed to do that.")),
    404: (N_("Page not found"), N_("There is nothing at this address.")),
    405: (N_("Method not allowed"), N_("This page does not accept that kind of request.")),
    408: (N_("Request timeout"), N_("What you sent did not arrive in time.")),
    413: (N_("Request too large"), N_("What you sent is larger than this page accepts.")),
    429: (N_("Too many requests"), N_("Please wait a moment and try again.")),
    500: (N_("Something went wrong"), N_("An unexpected error occurred; it has been logged.")),
}

# The JSON API's code for an error it did not name itself, by status.
API_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
STATIC_PATH = "/static/"  # under [server] public_url's path

DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


async def error_page(
    request: web.Request,
    status: int,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    title, default = _TITLES.get(status, ("Error", "The request could not be completed."))
    if request.path.startswith(request.app[keys.api_prefixes]):
        code = API_CODES.get(status, "error")
        return api_error(ApiError.one(status, code, message or default, headers=headers))
    if request.path.startswith(request.app[keys.json_prefixes]):
        resp: web.StreamResponse = web.json_response(
            {"Error": message or default}, status=status, headers=headers
        )
        return resp
    try:
        resp = await render(
            request,
            "error.html",
            {"title": _(title), "message": _(message or default)},
            status=status,
        )
    except Exception:  # rendering the error page must never turn a 4xx into a traceback
        log.exception("error page rendering failed")
        resp = web.Response(text=f"{status} {title}", status=status)
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def api_error(exc: ApiError) -> web.Response:
    return web.json_response({"errors": exc.problems}, status=exc.status, headers=exc.headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        extra = {
            k: v
            for k, v in exc.headers.items()
            if k in ("Retry-After", "Allow", "WWW-Authenticate")
        }
        text = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else None
        return await error_page(request, exc.status, text, extra)
    except ApiError as exc:
        return api_error(exc)
    except CsrfFailure:
        return await error_page(
            request,
            400,
            N_(
                "This form has expired or was not sent from this site. Go back, reload the page "
                "and try again."
            ),
        )
    except FormError as exc:
        return await error_page(request, 400, str(exc) or None)
    except BadSearch as exc:
        return await error_page(request, 400, str(exc))
    except TokenInvalid as exc:
        return await token_rejected(request, exc)
    except SigninRefused as exc:
        return await refused_page(request, exc)
    except Exception:
        log.exception("unhandled error for %s %s", request.method, request.path)
        return await error_page(request, 500)


def host_patterns(config: Config) -> tuple[str, ...]:
    """``[server] allowed_hosts``, normalised; by default public_url's host.

    Loopback names are answered besides these (see :mod:`resetd.hosts`).
    """
    configured = config.server.allowed_hosts
    if not configured:
        name = urlsplit(config.server.public_url).hostname or ""
        try:  # browsers send an internationalised name in its ASCII form
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        configured = (name,)
    return tuple(p for p in map(check_pattern, configured) if p is not None)


def allowed_hosts_middleware(config: Config) -> Middleware:
    """400 for a request addressed to a host resetd is not configured to answer
    (Django's ``ALLOWED_HOSTS``): DNS rebinding, or a proxy nobody set up for it.

    A request that names no host (HTTP/1.0 without Host: a load balancer's
    health check) passes: no attacker chose a name there, and a browser always
    sends one. The dev inbox refuses it on its own (:mod:`resetd.inbox.access`)."""
    patterns = host_patterns(config)

    @web.middleware
    async def allowed_hosts(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = request_host(request)
        if name != NO_HOST and (name is None or not host_allowed(name, patterns)):
            raise web.HTTPBadRequest(text=N_("This server does not answer to that host name."))
        return await handler(request)

    return allowed_hosts


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    exempt = request.app[keys.csrf_exempt_prefixes]
    if request.match_info.http_exception is not None:
        # No route (404, 405): nothing runs that a token would guard, and a
        # POST outside public_url's path gets its 404, not a form's 400.
        return await handler(request)
    if request.method in UNSAFE_METHODS and not request.path.startswith(exempt):
        form = await read_form(request)  # FormError, 408 or 413 when it cannot be read
        submitted = form.get("csrf_token")
        if not isinstance(submitted, str) or not await csrf_ok(request, submitted):
            raise CsrfFailure()
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: headers every response carries (handlers may tighten them)."""
    h = response.headers
    h.setdefault("Content-Security-Policy", DEFAULT_CSP)
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.app[keys.config].is_https:
        h.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    if not request.path.startswith(request.app[keys.config].prefix + STATIC_PATH):
        # Pages, redirects, the inbox's JSON, raw mail and event stream carry reset
        # links and captured mail: no cache (browser, proxy, CDN) may keep them.
        h.setdefault("Cache-Control", "no-store")
