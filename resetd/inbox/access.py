"""Who may see the inbox: this machine's own clients, or anyone with the password when allowed.

Every captured reset link is in the inbox, so it answers only requests that
can be nothing but local, checked by :func:`inbox_gate` for every path under
``/dev/inbox`` (pages, API, events, downloads), before routing or CSRF:

- the socket peer is a loopback address (else 404, as if the inbox were off);
- nothing says it comes from elsewhere (:func:`resetd.hosts.outside_reason`,
  shared with ``/readyz``): no proxy header (``Forwarded``, ``X-Forwarded-*``,
  ``X-Real-IP``, ``Client-IP``, ``Via`` …, ``_`` read as ``-``), a loopback
  Host (none at all does not do), no other site's ``Origin`` or
  ``Sec-Fetch-Site: cross-site`` (else 403);
- with a ``[dev_inbox] password``, HTTP basic auth with it (any user name).

With ``[dev_inbox] allow_remote = true`` (which needs a password of 16
characters or more) the password is asked of every request and the local-only
rules are lifted for those who give it. Wrong passwords are throttled
(:mod:`.guesses`): past the limit, 429 with Retry-After, checked or not.
"""

from __future__ import annotations

import base64
import hmac
import logging

from aiohttp import web

from .. import keys
from ..clientinfo import client_ip
from ..hosts import is_loopback_address, outside_reason
from ..middlewares import Handler
from . import keys as ikeys
from .guesses import GuessThrottle

log = logging.getLogger(__name__)

REALM = 'Basic realm="resetd dev inbox", charset="UTF-8"'
PREFIX = "/dev/inbox"  # under [server] public_url's path
LOCAL_ONLY = "The dev inbox answers requests from this machine only."


def inbox_path(app: web.Application) -> str:
    """Where the inbox is served: ``/dev/inbox`` under public_url's path
    (``/auth/dev/inbox`` for ``http://localhost:8080/auth``)."""
    return app[keys.config].prefix + PREFIX


def is_inbox_request(request: web.Request) -> bool:
    """Is this addressed to the inbox? By its path, and by the route it matched."""
    path, base = request.path, inbox_path(request.app)
    if path == base or path.startswith(base + "/"):
        return True
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical.startswith(base)


def _given_password(request: web.Request) -> str | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
        return ""
    return decoded.partition(":")[2]


def check_password(request: web.Request, password: str, throttle: GuessThrottle) -> None:
    """Raises HTTPTooManyRequests (throttled) or HTTPUnauthorized (missing or wrong).

    A request without credentials (a browser's first) is not a guess; one
    with wrong credentials is.
    """
    client = client_ip(request)
    wait = throttle.retry_after(client)
    if wait is not None:
        raise web.HTTPTooManyRequests(
            text="Too many wrong passwords for the dev inbox; try again later.",
            headers={"Retry-After": str(wait)},
        )
    given = _given_password(request)
    if given is not None and hmac.compare_digest(given.encode(), password.encode()):
        return
    if given is not None:
        throttle.failed(client)
    raise web.HTTPUnauthorized(
        text="The dev inbox needs its password.", headers={"WWW-Authenticate": REALM}
    )


def check_access(request: web.Request) -> None:
    """Raises HTTPNotFound (not loopback), HTTPForbidden (local peer, but the
    request is from elsewhere), HTTPUnauthorized or HTTPTooManyRequests."""
    cfg = request.app[keys.config].dev_inbox
    throttle = request.app[ikeys.guesses]
    if cfg.allow_remote:
        check_password(request, cfg.password, throttle)
        return
    if not is_loopback_address(request.remote):
        raise web.HTTPNotFound()
    reason = outside_reason(request)
    if reason is not None:
        log.info("dev inbox: refused a request from a loopback peer: %s", reason)
        raise web.HTTPForbidden(text=LOCAL_ONLY)
    if cfg.password:
        check_password(request, cfg.password, throttle)


@web.middleware
async def inbox_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request under ``/dev/inbox`` passes :func:`check_access` first."""
    if is_inbox_request(request):
        check_access(request)
    return await handler(request)
