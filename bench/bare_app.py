"""Baseline for figure 1: a bare aiohttp app answering the same form POST with a redirect.

It runs the same 10 ms loop ticker as resetd (``RESETD_LOOP_STATS``), so figure 5
has a same-run baseline: how late a timer fires in a bare app at saturation.
"""

from __future__ import annotations

import sys

from aiohttp import web

from resetd.loopmon import loop_monitor_ctx


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
    app.cleanup_ctx.append(loop_monitor_ctx)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
