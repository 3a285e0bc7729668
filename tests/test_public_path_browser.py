"""Mounted at ``/auth``, end to end in a real Chromium: ask for a link, read the
mail in the dev inbox at ``/auth/dev/inbox``, set the password, sign in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from resetd.app import create_app
from resetd.inbox import keys as ikeys

from .browsers import WAIT_MS, chromium, free_port
from .helpers import NEW_PASSWORD, ConfigFactory, add_user, eventually
from .inbox_helpers import make_message, send_smtplib

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], make_config: ConfigFactory
) -> TestServer:
    port = free_port()
    config = make_config(server={"public_url": f"http://127.0.0.1:{port}/auth"})
    return await aiohttp_server(create_app(config), host="127.0.0.1", port=port)


async def test_a_reset_under_auth_in_a_real_browser(browser: Browser, server: TestServer) -> None:
    await add_user(server.app)
    origin = str(server.make_url("/")).rstrip("/")
    context = await browser.new_context(base_url=origin)
    context.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    try:
        page: Page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        await page.goto("/auth/login")
        await page.get_by_role("link", name="Click to reset it").click()
        await expect(page).to_have_url(f"{origin}/auth/reset_password_request")
        await page.fill("#email", "susan@example.com")
        await page.get_by_role("button", name="Request password reset").click()
        await expect(page).to_have_url(f"{origin}/auth/login?notice=reset-sent")

        # The inbox under the path, its live list and its links.
        await page.goto("/auth/dev/inbox")
        row = page.locator("a.message-link").first
        await expect(row).to_be_visible()
        await row.click()
        await expect(page).to_have_url(re.compile(rf"^{re.escape(origin)}/auth/dev/inbox/\w+"))
        panel = page.locator(".reset-panel")
        await expect(panel.locator(".badge")).to_have_text("valid")
        link = await panel.get_by_role("link", name="Open reset link").get_attribute("href")
        assert link is not None and link.startswith(f"{origin}/auth/reset_password/")

        await page.goto(link)
        await expect(page).to_have_url(f"{origin}/auth/reset_password")
        await page.fill("#password", NEW_PASSWORD)
        await page.fill("#password2", NEW_PASSWORD)
        await page.get_by_role("button", name="Reset password").click()
        await expect(page).to_have_url(f"{origin}/auth/login")
        await expect(page.locator(".flash")).to_contain_text("Your password has been reset")

        await page.fill("#username", "susan")
        await page.fill("#password", NEW_PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(f"{origin}/auth/")
        await expect(page.locator(".who")).to_have_text("susan")

        [cookie] = [c for c in await context.cookies() if c["name"] == "resetd_session"]
        assert cookie["path"] == "/auth"
        assert cookie["httpOnly"] is True
        # The inbox's script, loaded from under the path, follows the event
        # stream there: a new mail shows up without a reload, linking under it.
        await page.goto("/auth/dev/inbox")
        rows = page.locator("li.message")
        await expect(rows).to_have_count(2)

        async def listening() -> bool:
            return server.app[ikeys.events].listening

        await eventually(listening, timeout=WAIT_MS / 1000)
        await send_smtplib(server.app, make_message(subject="Live under /auth"))
        await expect(rows).to_have_count(3)
        new = rows.first.locator("a.message-link")
        await expect(new).to_contain_text("Live under /auth")
        href = await new.get_attribute("href")
        assert href is not None and href.startswith("/auth/dev/inbox/")
        assert errors == []
    finally:
        await context.close()
