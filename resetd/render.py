"""Render a page template with what every page needs (CSRF token, flashes, user)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from . import keys
from .sessions import csrf_token, current_user, pop_flashes


def warm_templates(app: web.Application) -> int:
    """Compile every page template now; returns how many.

    Jinja compiles a template on its first use, 5-15 ms of CPU each: the first
    visitor of each page would wait for it, and so would every other request on
    the loop. ``serve`` calls this before it takes traffic."""
    env = aiohttp_jinja2.get_env(app)
    names = [n for n in env.list_templates() if not n.startswith("email/")]
    for name in names:
        env.get_template(name)
    return len(names)


async def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> web.Response:
    cfg = request.app[keys.config]
    ctx: dict[str, Any] = {
        "csrf_token": await csrf_token(request),
        "flashes": await pop_flashes(request),
        "current_user": await current_user(request) if cfg.server.login_pages else None,
        "login_pages": cfg.server.login_pages,
        "login_url": cfg.login_location,
        "errors": {},
    }
    ctx.update(context or {})
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)
