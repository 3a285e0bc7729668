"""Who may see the inbox: loopback clients, or anyone with the password when allowed.

With ``[dev_inbox] allow_remote = true`` and a ``password``, every page and API
call needs HTTP basic auth (any user name, that password), from anywhere.
Otherwise only loopback peers are served, and others get a 404, as if the
inbox were off. Every inbox handler is wrapped with :func:`guarded`.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web

from .. import keys

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REALM = 'Basic realm="resetd dev inbox", charset="UTF-8"'


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _password_ok(request: web.Request, password: str) -> bool:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
        return False
    _, _, given = decoded.partition(":")
    return hmac.compare_digest(given.encode(), password.encode())


def check_access(request: web.Request) -> None:
    """Raises HTTPNotFound (not loopback) or HTTPUnauthorized (password needed)."""
    cfg = request.app[keys.config].dev_inbox
    remote_ok = cfg.allow_remote and bool(cfg.password)
    if not remote_ok and not is_loopback(request.remote):
        raise web.HTTPNotFound()
    if cfg.password and not _password_ok(request, cfg.password):
        raise web.HTTPUnauthorized(
            text="The dev inbox needs its password.", headers={"WWW-Authenticate": REALM}
        )


def guarded(handler: Handler) -> Handler:
    @wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        check_access(request)
        return await handler(request)

    return wrapper
