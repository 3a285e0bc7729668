"""Baseline for figure 1: a bare aiohttp app answering the same form POST with a redirect."""

from __future__ import annotations

import sys

from aiohttp import web


async def form(request: web.Request) -> web.Response:
    if request.method == "POST":
        await request.post()
        raise web.HTTPSeeOther(location="/login")
    return web.Response(
        text='<form method="post"><input name="csrf_token" value="x"><input name="email"></form>',
        content_type="text/html",
    )


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/reset_password_request", form)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
