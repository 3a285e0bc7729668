"""The JSON API driven as a front end drives it: a page served from another
loopback origin calls ``fetch`` across origins in a real Chromium. A listed
origin asks for a link, reads the mailed front-end link and sets the password;
an origin not listed is stopped by the browser at the preflight."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page

from resetd import keys
from resetd.app import create_app

from .browsers import WAIT_MS, chromium, free_port
from .helpers import GOOD_PASSWORD, NEW_PASSWORD, ConfigFactory, add_user, eventually
from .sqlite_rows import app_db

pytestmark = pytest.mark.timeout(90)

FRONT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Microblog</title></head>
<body><h1>Microblog</h1></body></html>
"""

# What a single-page app's code does: POST JSON, read the status, body and Retry-After.
CALL = """async ([url, body]) => {
  try {
    const r = await fetch(url, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
    const text = await r.text();
    return {status: r.status, body: text ? JSON.parse(text) : null};
  } catch (e) {
    return {error: e.name};
  }
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def _front_page(request: web.Request) -> web.Response:
    return web.Response(text=FRONT_PAGE, content_type="text/html")


@pytest.fixture
async def front(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    """The app's front end: static pages on their own loopback port."""
    app = web.Application()
    app.router.add_get("/", _front_page)
    app.router.add_get("/reset", _front_page)
    return await aiohttp_server(app, host="127.0.0.1", port=free_port())


@pytest.fixture
async def resetd(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    make_config: ConfigFactory,
    front: TestServer,
) -> TestServer:
    port = free_port()
    origin = f"http://127.0.0.1:{front.port}"
    config = make_config(
        server={"public_url": f"http://127.0.0.1:{port}/auth"},
        api={"cors_origins": [origin]},
        reset={"link_url": f"{origin}/reset#token={{token}}"},
    )
    return await aiohttp_server(create_app(config), host="127.0.0.1", port=port)


async def _call(page: Page, url: str, body: dict[str, str]) -> Any:
    return await page.evaluate(CALL, [url, body])


async def _queued(server: TestServer) -> int:
    row = await app_db(server.app).fetchone("SELECT COUNT(*) AS n FROM reset_requests")
    assert row is not None
    return int(row["n"])


async def test_a_front_end_on_a_listed_origin_resets_a_password_with_fetch(
    browser: Browser, front: TestServer, resetd: TestServer
) -> None:
    await add_user(resetd.app)
    api = f"http://127.0.0.1:{resetd.port}/auth/api/v1"
    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{front.port}/")
        got = await _call(page, f"{api}/reset-requests", {"email": "susan@example.com"})
        assert got == {"status": 202, "body": {"status": "accepted"}}

        async def front_link() -> str | None:
            resp = await page.request.get(
                f"http://127.0.0.1:{resetd.port}/auth/dev/inbox/api/v1/message/latest/links"
            )
            if resp.status != 200:
                return None
            links = (await resp.json())["Links"]
            return next((link["URL"] for link in links if link["Kind"] == "reset"), None)

        link: str = await eventually(front_link, timeout=WAIT_MS / 1000)
        assert link.startswith(f"http://127.0.0.1:{front.port}/reset#token=")

        # The front end's page reads the token from its fragment, never sent to a server.
        await page.goto(link)
        token = await page.evaluate("new URLSearchParams(location.hash.slice(1)).get('token')")
        got = await _call(page, f"{api}/password-resets", {"token": token, "password": "short"})
        assert got["status"] == 400
        assert [e["code"] for e in got["body"]["errors"]] == ["password_too_short"]
        got = await _call(
            page, f"{api}/password-resets", {"token": token, "password": NEW_PASSWORD}
        )
        assert got == {"status": 204, "body": None}
        got = await _call(
            page, f"{api}/password-resets", {"token": token, "password": NEW_PASSWORD}
        )
        assert got["status"] == 400
        assert [e["code"] for e in got["body"]["errors"]] == ["token_invalid"]
        # The API set no cookie in the browser.
        assert await context.cookies() == []
    finally:
        await context.close()
    users = resetd.app[keys.users]
    user = await users.find_by_login("susan")
    assert user is not None
    assert not await resetd.app[keys.hasher].verify(user.password_hash, GOOD_PASSWORD)
    assert await resetd.app[keys.hasher].verify(user.password_hash, NEW_PASSWORD)


async def test_a_page_of_an_origin_not_listed_is_stopped_by_the_browser(
    browser: Browser, front: TestServer, resetd: TestServer
) -> None:
    await add_user(resetd.app)
    api = f"http://127.0.0.1:{resetd.port}/auth/api/v1"
    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        # The same front end under another name is another origin, not listed.
        await page.goto(f"http://localhost:{front.port}/")
        got = await _call(page, f"{api}/reset-requests", {"email": "susan@example.com"})
        assert got == {"error": "TypeError"}  # the preflight was refused
        # A form on that page posting across origins is refused by its type.
        await page.set_content(
            f'<form method="post" action="{api}/reset-requests" enctype="text/plain">'
            '<input name=\'{"email": "susan@example.com", "x": "\' value=\'"}\'>'
            "<button>go</button></form>"
        )
        async with page.expect_response(f"{api}/reset-requests") as answer:
            await page.click("button")
        assert (await answer.value).status in (403, 415)
    finally:
        await context.close()
    assert await _queued(resetd) == 0
