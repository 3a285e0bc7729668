"""/dev/inbox/view/{ID}.html opened in a real browser: the mail's script never runs.

The mail is served from the inbox's own origin, where a script could call the
API (delete every message, read every reset link). Chromium loads it
directly, as a tab would, and nothing the mail tries happens.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Dialog, expect

from resetd.inbox import keys as ikeys
from tests.inbox_helpers import make_message, send_smtplib
from tests.test_inbox_browser import WAIT_MS, browser, server

__all__ = ["browser", "server"]  # the fixtures, shared with the inbox's browser tests

pytestmark = pytest.mark.timeout(60)

EVIL = (
    '<p id="hello">Hello from the mail</p>'
    "<script>document.title='pwned';"
    "fetch('/dev/inbox/api/v1/messages', {method: 'DELETE'}); alert('script')</script>"
    '<img id="bad" src="x" onerror="document.body.dataset.pwned=1; alert(\'onerror\')">'
)


async def test_view_html_runs_no_script_of_the_mail(browser: Browser, server: TestServer) -> None:
    app = server.app
    await send_smtplib(app, make_message("Evil", text="t", html=EVIL))
    context = await browser.new_context(base_url=str(server.make_url("/")).rstrip("/"))
    context.set_default_timeout(WAIT_MS)
    dialogs: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    try:
        page = await context.new_page()
        page.on("dialog", dismiss)
        await page.goto("/dev/inbox/view/latest.html")
        await expect(page.locator("#hello")).to_have_text("Hello from the mail")
        await page.wait_for_load_state("load")  # the broken image has failed by now
        await page.wait_for_timeout(300)  # time for a script that did run to show itself
        assert await page.title() != "pwned"
        assert await page.locator("body").get_attribute("data-pwned") is None
        assert dialogs == []
        total, _ = await app[ikeys.store].counts()
        assert total == 1  # the DELETE never went out
    finally:
        await context.close()
