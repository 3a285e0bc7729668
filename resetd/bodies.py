"""Reading a request's body: a form or a JSON value, or a 4xx — never a 500.

Every body resetd reads goes through :func:`read_form` (the CSRF middleware,
for every form) or :func:`read_json` (the inbox API). aiohttp decodes a body
with whatever charset its Content-Type names: an unknown one raised
LookupError (500), and ``utf-7`` turned ``+2AA-`` into a lone surrogate that
SQLite refused later (500, and the whole group-committed batch of reset
requests with it). JSON nested a few thousand deep raised RecursionError. So:
UTF-8 (or ASCII) only, every decoded string valid Unicode, and a client that
trickles its body in gets 408 after ``[server] body_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from . import keys
from .errors import FormError
from .i18n import N_

# codecs' canonical names of what a client may declare (utf8, UTF-8, us-ascii …).
ACCEPTED_CHARSETS = frozenset({"utf-8", "ascii"})

_SURROGATE = re.compile("[\ud800-\udfff]")

Form = MultiDictProxy[Any]


def charset_accepted(charset: str | None) -> bool:
    """True for no charset (UTF-8 is the default) or a name of UTF-8 or ASCII."""
    if charset is None:
        return True
    try:
        return codecs.lookup(charset).name in ACCEPTED_CHARSETS
    except LookupError:
        return False


def is_valid_unicode(value: object) -> bool:
    """False when a string anywhere in ``value`` (keys included) holds a lone surrogate.

    Walks lists and dicts with an explicit stack: the value came from outside
    and may be as deep as the JSON decoder allowed.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return False
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return True


def _deadline(request: web.Request) -> float:
    seconds: float = request.app[keys.config].server.body_timeout
    return seconds


async def read_form(request: web.Request) -> Form:
    """The posted form (cached by aiohttp: handlers' ``request.post()`` gets it too).

    Raises FormError (400) when the body cannot be read as a form of valid
    Unicode, HTTPRequestTimeout (408) when it does not arrive in time, and
    aiohttp's HTTPRequestEntityTooLarge (413) past ``client_max_size``.
    """
    if not charset_accepted(request.charset):
        raise FormError(N_("This form's character set is not supported; send UTF-8."))
    try:
        if request.content.is_eof():
            # All of it is here (a small form comes with its headers): reading
            # it cannot wait, and a timer armed and cancelled for nothing cost
            # 2-3 µs of every form POST.
            form = await request.post()
        else:
            async with asyncio.timeout(_deadline(request)):
                form = await request.post()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=N_("The form did not arrive in time.")) from None
    # ValueError: malformed multipart, undecodable bytes (UnicodeDecodeError);
    # LookupError: a multipart part naming an unknown charset.
    except (ValueError, LookupError) as exc:
        raise FormError(N_("The form could not be read.")) from exc
    for name, value in form.items():
        if _SURROGATE.search(name) or (isinstance(value, str) and _SURROGATE.search(value)):
            # A multipart part may still declare a charset such as utf-7.
            raise FormError(N_("The form could not be read."))
    return form


async def read_json(request: web.Request) -> Any:
    """The body decoded as JSON (None when there is none).

    Raises HTTPBadRequest (400) for a charset other than UTF-8, bytes that are
    not UTF-8, text that is not JSON or nests too deep, or a string holding a
    lone surrogate; HTTPRequestTimeout (408) when the body does not arrive in
    time; HTTPRequestEntityTooLarge (413) past ``client_max_size``.
    """
    if not request.can_read_body:
        return None
    if not charset_accepted(request.charset):
        raise web.HTTPBadRequest(text="The body's character set is not supported; send UTF-8.")
    try:
        async with asyncio.timeout(_deadline(request)):
            raw = await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="The body did not arrive in time.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise web.HTTPBadRequest(text="The body is not valid JSON.") from None
    if not is_valid_unicode(data):
        raise web.HTTPBadRequest(text="The body is not valid JSON (a lone surrogate).")
    return data
