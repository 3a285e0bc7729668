"""Languages: which one a request gets, the gettext catalogs, dates in words.

English is the source language (the msgids); every other shipped language has
a catalog in ``resetd/locale/<lang>/LC_MESSAGES/messages.po``, compiled next to
it as ``messages.mo``. The ``.mo`` files are committed and listed in
pyproject's package data, so ``pip install .`` needs no build step;
tests/test_i18n.py fails when one is older than its ``.po``.

The language in use lives in a context variable, as Django's
``translation.activate`` does: :func:`language_middleware` sets it around each
request's handler and the mail composer around each mail it renders, so
``_()`` in Python and ``{% trans %}`` in templates speak the same language
without the request being handed through every function.
"""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path

import jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware
from babel.dates import format_datetime, format_timedelta
from babel.support import Translations
from markupsafe import Markup

SHIPPED: tuple[str, ...] = ("en", "es")
SOURCE = "en"  # the language the msgids are written in
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"

# Accept-Language comes from anybody: only its first MAX_HEADER characters and
# MAX_RANGES language ranges are looked at, each once (see choose()).
MAX_HEADER = 512
MAX_RANGES = 16

_active: ContextVar[str] = ContextVar("resetd_language", default=SOURCE)


@cache
def catalog(lang: str) -> _gettext.NullTranslations:
    """The compiled catalog of ``lang``; the msgids themselves for English (or a
    language without a catalog, which config_rules does not let through)."""
    if lang == SOURCE:
        return _gettext.NullTranslations()
    return Translations.load(str(LOCALE_DIR), [lang], domain=DOMAIN)


def current() -> str:
    """The language in use: the request's, the mail's, or English outside both."""
    return _active.get()


@contextmanager
def using(lang: str) -> Iterator[None]:
    """Speak ``lang`` inside the block (and restore the previous language after)."""
    token = _active.set(lang)
    try:
        yield
    finally:
        _active.reset(token)


def gettext(message: str) -> str:
    return catalog(_active.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return catalog(_active.get()).ngettext(singular, plural, n)


_ = gettext


def install(env: jinja2.Environment) -> None:
    """``{% trans %}``, ``_()`` and ``gettext()`` in ``env``'s templates speak the
    language in use: Jinja's newstyle gettext, with the same results.

    Jinja's own newstyle wrappers reach the catalog through ``Context.call``,
    which inspects the function on every call, and format even a message
    without variables; a reset mail makes eleven such calls. These call the
    catalog directly and skip formatting a message that has no ``%`` and no
    variables (formatting would return it unchanged): composing a reset mail
    took 93-101 µs against 39-42 µs before it had a language, 82 µs with these."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext, ngettext, newstyle=True
    )
    env.globals.update(gettext=_jinja_gettext, ngettext=_jinja_ngettext)


@jinja2.pass_context
def _jinja_gettext(context: jinja2.runtime.Context, message: str, /, **variables: object) -> str:
    # As jinja2.ext._make_new_gettext: Markup when autoescaping (so that `%`
    # escapes the variables), always read as a format string. The message is
    # the template's own text or its translation, never an outside value.
    rv = catalog(_active.get()).gettext(message)
    if context.eval_ctx.autoescape:
        rv = Markup(rv)  # noqa: S704
    if not variables and "%" not in rv:
        return rv
    return rv % variables


@jinja2.pass_context
def _jinja_ngettext(
    context: jinja2.runtime.Context, singular: str, plural: str, n: int, /, **variables: object
) -> str:
    # As jinja2.ext._make_new_ngettext.
    variables.setdefault("num", n)
    rv = catalog(_active.get()).ngettext(singular, plural, n)
    if context.eval_ctx.autoescape:
        rv = Markup(rv)  # noqa: S704
    return rv % variables


def N_(message: str) -> str:
    """Marks ``message`` for extraction only: a constant translated where it is used."""
    return message


def choose(header: str | None, offered: Sequence[str]) -> str:
    """The language of ``offered`` that ``Accept-Language`` (RFC 9110 §12.5.4)
    prefers: highest q wins, the earlier range on a tie; ``es-MX`` matches ``es``;
    ``*`` or nothing that matches gives ``offered[0]``.

    The header is untrusted: it is cut to MAX_HEADER characters and MAX_RANGES
    ranges, and read with ``split``/``partition`` only, so the work is linear
    in what is kept whatever the header holds. A malformed q counts as 0."""
    if not header:
        return offered[0]
    best, best_q = offered[0], 0.0
    for item in header[:MAX_HEADER].split(",", MAX_RANGES)[:MAX_RANGES]:
        tag, _sep, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _eq, value = param.partition("=")
            if name.strip().lower() == "q":
                q = _quality(value.strip())
        if q <= best_q:
            continue
        lang = _match(tag.strip().lower().replace("_", "-"), offered)
        if lang is not None:
            best, best_q = lang, q
    return best


def _quality(value: str) -> float:
    """An RFC 9110 qvalue (``0``, ``0.8``, ``1.000``); anything else is 0."""
    if not 1 <= len(value) <= 5 or value.strip("0123456789.") or value.count(".") > 1:
        return 0.0
    q = float(value) if value != "." else 0.0
    return q if 0.0 <= q <= 1.0 else 0.0


def _match(tag: str, offered: Sequence[str]) -> str | None:
    if tag == "*":
        return offered[0]
    if tag in offered:
        return tag
    primary = tag.partition("-")[0]
    return primary if primary in offered else None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def language_middleware(offered: tuple[str, ...]) -> Middleware:
    """Runs each request's handler (and the error pages) in the language its
    ``Accept-Language`` prefers among ``offered``. :func:`resetd.render.render`
    says which in ``<html lang>`` and ``Content-Language``."""

    @web.middleware
    async def language(request: web.Request, handler: Handler) -> web.StreamResponse:
        # `using` inlined: this runs on every request, and a generator-based
        # context manager costs several times the ContextVar set and reset.
        token = _active.set(choose(request.headers.get("Accept-Language"), offered))
        try:
            return await handler(request)
        finally:
            _active.reset(token)

    return language


@lru_cache(maxsize=64)
def expires_in(seconds: int, lang: str) -> str:
    """``10 minutes`` / ``10 minutos``: a link's lifetime in words (the same few
    lifetimes again and again: Babel's formatting is kept per pair)."""
    return format_timedelta(timedelta(seconds=seconds), locale=lang)


def when(moment: datetime, lang: str) -> str:
    """A moment as a reader of ``lang`` writes it, in UTC (``December 2, 2026 at
    4:55:00 PM UTC`` / ``2 de diciembre de 2026, 16:55:00 UTC``)."""
    # CLDR puts a narrow no-break space before "PM": a plain one keeps an English
    # mail plain ASCII (7bit, as it was before it had a language).
    return format_datetime(moment, format="long", tzinfo=UTC, locale=lang).replace("\u202f", " ")
