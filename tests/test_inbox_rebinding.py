"""DNS rebinding against the dev inbox, in a real browser (Debian's Chromium).

An attacker's page at ``http://rebind.attacker.example:PORT/`` makes its name
resolve to 127.0.0.1 and then fetches ``/dev/inbox/…`` from its own origin:
the browser sends it to the loopback port, with the attacker's name as Host.
Here a resolver rule maps the name to 127.0.0.1 from the start, so the page
the browser opens under that name comes from resetd as well (Chromium would
refuse a public page's requests to loopback: other browsers do not), and the
attacker's script is run in it by Playwright.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, async_playwright

from resetd.app import create_app
from tests.helpers import ConfigFactory
from tests.inbox_helpers import make_message, send_smtplib

CHROMIUM = Path("/usr/bin/chromium")
ATTACKER = "rebind.attacker.example"
WAIT_MS = 10_000
API = "/dev/inbox/api/v1"

pytestmark = pytest.mark.timeout(60)

STEAL = """async (paths) => {
    const answers = [];
    for (const path of paths) {
        const abort = new AbortController();
        const resp = await fetch(path, {signal: abort.signal});
        // The event stream never ends by itself: its headers are enough.
        const body = path.endsWith("/events") ? "" : await resp.text();
        abort.abort();
        answers.push([path, resp.status, body]);
    }
    return answers;
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                f"--host-resolver-rules=MAP {ATTACKER} 127.0.0.1",
            ],
            timeout=WAIT_MS,
        )
        try:
            yield launched
        finally:
            await launched.close()


async def test_a_rebinding_page_reads_nothing_from_the_inbox(
    browser: Browser,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    make_config: ConfigFactory,
) -> None:
    server = await aiohttp_server(create_app(make_config()), host="127.0.0.1")
    link = "http://localhost:8080/reset_password/eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"
    await send_smtplib(server.app, make_message("Reset", html=f'<a href="{link}">Reset</a>'))
    origin = f"http://{ATTACKER}:{server.port}"

    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        await page.goto(f"{origin}/login")  # any page will do: it is the origin that counts
        paths = [
            f"{API}/message/latest/links",
            f"{API}/messages",
            f"{API}/message/latest/raw",
            "/dev/inbox",
            "/dev/inbox/events",
        ]
        answers: list[Any] = await page.evaluate(STEAL, paths)
    finally:
        await context.close()
    assert [(path, status) for path, status, _ in answers] == [(p, 403) for p in paths]
    assert not any("reset_password" in body for _, _, body in answers)
