"""The dev inbox in a real browser: Debian's Chromium driven by Playwright.

Browsers are never downloaded: the tests use ``/usr/bin/chromium`` and skip
when it is not installed (CI installs it). The app runs on a real loopback
port, mail arrives over real SMTP, and every wait is bounded.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, expect

from resetd import keys
from resetd.app import create_app
from resetd.inbox import keys as ikeys
from resetd.inbox.search import Query
from resetd.reset.tokens import TokenState
from resetd.users import fingerprint
from tests.helpers import ConfigFactory, add_user, eventually
from tests.inbox_helpers import make_message, send_smtplib

from .browsers import WAIT_MS, chromium, free_port
from .sqlite_rows import app_db, record_token

TITLE = "Dev inbox · resetd"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], make_config: ConfigFactory
) -> TestServer:
    """The app on a real loopback port that its reset links point at."""
    port = free_port()
    config = make_config(server={"public_url": f"http://127.0.0.1:{port}"})
    return await aiohttp_server(create_app(config), host="127.0.0.1", port=port)


class Watched:
    """What a page did that it should not have: console errors, uncaught errors, dialogs."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("dialog", self._dialog)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    async def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()


@pytest.fixture
async def page(browser: Browser, server: TestServer) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=str(server.make_url("/")).rstrip("/"))
    context.set_default_timeout(WAIT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


def _png_size(data_url: str) -> tuple[int, int]:
    """Width and height of a ``data:image/png;base64,…`` URL's image."""
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix), data_url[:40]
    png = base64.b64decode(data_url[len(prefix) :])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


async def _stream_open(app: web.Application) -> None:
    """Wait until the page's EventSource is subscribed, so no event can be missed."""

    async def listening() -> bool:
        return app[ikeys.events].listening

    await eventually(listening, timeout=WAIT_MS / 1000)


async def _latest_id(app: web.Application) -> str:
    latest = await app[ikeys.store].latest(Query())
    assert latest is not None
    return latest.id


async def test_new_mail_appears_live_with_the_unread_count_in_title_and_favicon(
    server: TestServer, page: Page
) -> None:
    app = server.app
    watched = Watched(page)
    await page.goto("/dev/inbox")
    await expect(page).to_have_title(TITLE)
    icon = page.locator('link[rel="icon"]')
    plain = await icon.get_attribute("href")
    assert plain == "/static/favicon.svg"
    await page.evaluate("window.sameDocument = true")
    await _stream_open(app)

    await send_smtplib(app, make_message("Live in the browser"))
    first = page.locator("#messages li.message").first
    await expect(first).to_contain_text("Live in the browser")
    await expect(first).to_have_class(re.compile(r"\bunread\b"))
    await expect(page).to_have_title(f"(1) {TITLE}")
    await expect(page.locator('[data-live="total"]')).to_have_text("1 message")
    await expect(icon).to_have_attribute("href", re.compile(r"^data:image/png;base64,"))
    one = await icon.get_attribute("href")
    assert one is not None and _png_size(one) == (64, 64)

    await send_smtplib(app, make_message("And a second one"))
    await expect(page.locator("#messages li.message")).to_have_count(2)
    await expect(page).to_have_title(f"(2) {TITLE}")
    await expect(icon).not_to_have_attribute("href", one)
    assert (await icon.get_attribute("href") or "").startswith("data:image/png;base64,")

    resp = await page.request.put("/dev/inbox/api/v1/messages", data={"Read": True})
    assert resp.ok
    await expect(page).to_have_title(TITLE)
    await expect(icon).to_have_attribute("href", re.compile(r"/static/favicon\.svg$"))
    await expect(page.locator("#messages li.message.unread")).to_have_count(0)
    assert await page.evaluate("window.sameDocument") is True  # never reloaded
    assert watched.errors == [] and watched.dialogs == []


async def test_script_in_a_mail_never_runs_in_the_browser(server: TestServer, page: Page) -> None:
    app = server.app
    html = (
        '<p id="hello">Hello from the mail</p>'
        "<script>document.title='pwned'; parent.document.title='pwned'; alert('script')</script>"
        '<img id="bad" src="x" onerror="document.body.dataset.pwned=1; '
        "parent.document.title='pwned'; alert('onerror')\">"
    )
    await send_smtplib(app, make_message("Evil", html=html))
    watched = Watched(page)
    await page.goto(f"/dev/inbox/{await _latest_id(app)}")
    await expect(page.locator("iframe.mail-frame")).to_be_visible()
    # The sandboxed srcdoc frame runs out of process: reach it through page.frames.
    mail = next(f for f in page.frames if f is not page.main_frame)
    await mail.wait_for_load_state("load")  # the broken image has failed by now
    await expect(mail.locator("#hello")).to_have_text("Hello from the mail")
    await expect(mail.locator("#bad")).to_be_attached()
    await page.wait_for_timeout(300)  # give a script that did run time to show itself
    assert await page.title() == f"Evil · {TITLE}"
    assert await mail.evaluate("document.title") != "pwned"
    assert await mail.locator("body").get_attribute("data-pwned") is None
    assert watched.dialogs == []


async def test_reset_panel_counts_down_and_its_link_opens_without_using_the_token(
    server: TestServer, page: Page
) -> None:
    app = server.app
    await add_user(app)
    await page.goto("/reset_password_request")
    await page.get_by_label("Email").fill("susan@example.com")
    await page.get_by_role("button", name=re.compile("reset", re.IGNORECASE)).click()
    resp = await page.request.get(
        "/dev/inbox/api/v1/message/latest?query=to:susan@example.com&wait=10"
    )
    assert resp.ok, await resp.text()
    message_id = (await resp.json())["ID"]

    await page.goto(f"/dev/inbox/{message_id}")
    panel = page.locator(".reset-panel")
    await expect(panel).to_have_count(1)  # the link is in the text and the HTML part
    await expect(panel.locator(".badge")).to_have_text("valid")
    countdown = panel.locator(".countdown")
    await expect(countdown).to_have_text(re.compile(r"^expires in \d\d:\d\d$"))
    before = await countdown.text_content()
    await expect(countdown).not_to_have_text(before or "", timeout=2500)
    jti = await panel.locator("dt:text-is('Token id (jti)') + dd code").text_content()
    assert jti
    # Changing only the hash (no reload) switches the tab too.
    await page.evaluate("location.hash = '#tab-links'")
    await expect(page.locator("#tab-links")).to_be_visible()
    await expect(page.locator("#tab-html")).to_be_hidden()

    async with page.context.expect_page() as opened:
        await panel.get_by_role("link", name="Open reset link").click()
    reset_page = await opened.value
    await reset_page.wait_for_load_state()
    assert reset_page.url == f"{server.make_url('/reset_password')}"
    await expect(reset_page.locator('input[type="password"]').first).to_be_visible()

    assert await app[keys.ledger].state(jti) is TokenState.VALID
    await page.reload()
    await expect(page.locator(".reset-panel .badge")).to_have_text("valid")


async def _box(page: Page, selector: str) -> dict[str, float]:
    box = await page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


async def test_list_and_message_pages_fit_a_phone_screen(
    server: TestServer, browser: Browser
) -> None:
    app = server.app
    user = await add_user(app)
    token, claims = app[keys.codec].mint(user.id, fingerprint(user))
    async with app_db(app).transaction() as conn:
        await record_token(conn, claims)
    link = f"{app[keys.config].public_origin}/reset_password/{token}"
    html = f'<p><a href="{link}">Reset your password</a></p>'
    await send_smtplib(app, make_message("Reset", sender="App <a@example.test>", html=html))
    context = await browser.new_context(
        base_url=str(server.make_url("/")).rstrip("/"), viewport={"width": 375, "height": 800}
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        await page.goto("/dev/inbox")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 375
        # Delete sits at the end of the recipients' line, clear of every text.
        delete = await _box(page, ".message .m-delete button")
        for part in (".m-from", ".m-time"):
            assert not _overlap(delete, await _box(page, f".message {part}")), part
        to = await _box(page, ".message .m-to")
        assert to["y"] <= delete["y"] + delete["height"] / 2 <= to["y"] + to["height"]
        to_text_end = await page.locator(".message .m-to").evaluate(
            "n => n.getBoundingClientRect().right - parseFloat(getComputedStyle(n).paddingRight)"
        )
        assert delete["x"] >= to_text_end
        assert await page.locator(".message .m-from").evaluate(
            "n => n.scrollWidth <= n.clientWidth"
        ), "the sender's name is cut off"

        await page.goto(f"/dev/inbox/{await _latest_id(app)}")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 375
        url = page.locator(".reset-url")
        size = await url.locator("code").evaluate("n => parseFloat(getComputedStyle(n).fontSize)")
        assert (await _box(page, ".reset-url code"))["height"] < 2.5 * size  # one line…
        assert await url.evaluate("n => n.scrollWidth > n.clientWidth")  # …that scrolls
        # The Delete form sits in the actions row (a <form> inside a <p> would end the <p>).
        await expect(page.locator(".m-actions form")).to_have_count(1)
        await expect(page.locator(".tab-list a").first).to_be_visible()
    finally:
        await context.close()
