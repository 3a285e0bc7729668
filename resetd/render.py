"""Render a page template with what every page needs (CSRF token, flashes, user,
the language)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from . import i18n, keys
from .assets import check_templates, template_dirs
from .sessions import csrf_token, current_user, pop_flashes


def warm_templates(app: web.Application) -> int:
    """Compile every page template now; returns how many.

    Jinja compiles a template on its first use, 5-15 ms of CPU each: the first
    visitor of each page would wait for it, and so would every other request on
    the loop. ``serve`` calls this before it takes traffic. Every file of the
    operator's ``[server] templates`` and of the shipped set is compiled first:
    raises :class:`~resetd.config.ConfigError` naming the file and line of one
    that does not compile."""
    env = aiohttp_jinja2.get_env(app)
    check_templates(env, template_dirs(app[keys.config].server))
    names = [n for n in env.list_templates() if not n.startswith("email/")]
    for name in names:
        env.get_template(name)
    return len(names)


async def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> web.Response:
    """The page, in the language in use (:mod:`resetd.i18n`), said in ``<html
    lang>`` and ``Content-Language``; the dev inbox's pages are English only.
    A variable the template needs but ``context`` lacks raises (see
    :class:`~resetd.assets.MissingIsError`): the error middleware logs it and
    answers 500."""
    cfg = request.app[keys.config]
    lang = "en" if template.startswith("inbox/") else i18n.current()
    ctx: dict[str, Any] = {
        "lang": lang,
        "csrf_token": await csrf_token(request),
        "flashes": await pop_flashes(request),
        "current_user": await current_user(request) if cfg.server.login_pages else None,
        "login_pages": cfg.server.login_pages,
        "login_url": cfg.login_location,
        "errors": {},
    }
    ctx.update(context or {})
    with i18n.using(lang):
        resp = aiohttp_jinja2.render_template(template, request, ctx, status=status)
    resp.headers["Content-Language"] = lang
    if not template.startswith("inbox/"):
        # Caches keep one copy per language (pages are no-store, but a shared
        # cache in front may still look).
        vary = resp.headers.get("Vary")
        resp.headers["Vary"] = f"{vary}, Accept-Language" if vary else "Accept-Language"
    return resp
