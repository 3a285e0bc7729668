"""Dark mode: every page follows ``prefers-color-scheme``, and its text stays readable.

Chromium (Debian's, driven by Playwright) renders each page with the dark
scheme emulated; the test reads the computed colours of the text on each page
and checks WCAG's contrast ratio against the background actually behind it.
The screenshots are kept in the test's tmp directory for a look.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from tests.helpers import add_user
from tests.inbox_helpers import make_message, send_smtplib
from tests.test_inbox_browser import WAIT_MS, browser, server

__all__ = ["browser", "server"]  # the fixtures, shared with the inbox's browser tests

pytestmark = pytest.mark.timeout(90)

# Each text element's colour, and the first opaque background behind it.
COLOURS_JS = """
(selectors) => {
  const opaque = (el) => {
    for (; el; el = el.parentElement) {
      const bg = getComputedStyle(el).backgroundColor;
      if (bg !== 'transparent' && !bg.endsWith(', 0)')) return bg;
    }
    return 'rgb(255, 255, 255)';
  };
  const found = [];
  for (const sel of selectors) {
    for (const el of document.querySelectorAll(sel)) {
      if (!el.getClientRects().length) continue;
      found.push([sel, getComputedStyle(el).color, opaque(el)]);
    }
  }
  return found;
}
"""
TEXT = [
    "body", "h1", "label", "p", "a", "button", ".flash", ".error", ".field-error", ".aside",
    ".foot", ".brand", "input", ".m-from", ".m-subject", ".m-to", ".m-time", ".inbox-meta",
    ".m-head dt", ".m-head dd", ".tab-list a", "pre", "small", ".reset-panel h2", ".badge",
    ".reset-url code", ".claims dt", ".claims dd", ".countdown",
]  # fmt: skip


def _rgb(css: str) -> tuple[float, float, float]:
    inner = css[css.index("(") + 1 : css.index(")")].replace(",", " ").split()
    r, g, b = (float(v) for v in inner[:3])
    return r, g, b


def _luminance(css: str) -> float:
    def channel(v: float) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = _rgb(css)
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


async def _check(page: Page, path: str, shots: Path) -> None:
    await page.goto(path)
    await page.screenshot(path=str(shots / f"{path.strip('/').replace('/', '_') or 'home'}.png"))
    body_bg = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert _luminance(body_bg) < 0.05, f"{path}: the page is not dark ({body_bg})"
    for selector, fg, bg in await page.evaluate(COLOURS_JS, TEXT):
        ratio = contrast(fg, bg)
        assert ratio >= 4.5, f"{path} {selector}: {fg} on {bg} is {ratio:.2f}:1"


async def test_every_page_follows_the_dark_scheme_with_readable_text(
    browser: Browser, server: TestServer, tmp_path: Path
) -> None:
    app = server.app
    await send_smtplib(app, make_message("Reset your password", html="<p>Mail</p>"))
    context = await browser.new_context(
        base_url=str(server.make_url("/")).rstrip("/"), color_scheme="dark"
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        for path in ("/login", "/reset_password_request", "/reset_password/not-a-token",
                     "/dev/inbox", "/dev/inbox/latest", "/no-such-page"):  # fmt: skip
            await _check(page, path, tmp_path)
        # A resetd reset mail: its message page has the reset-link panel and a badge.
        await add_user(app)
        await page.goto("/reset_password_request")
        await page.get_by_label("Email").fill("susan@example.com")
        await page.locator("form button[type=submit]").first.click()
        resp = await page.request.get(
            "/dev/inbox/api/v1/message/latest?query=to:susan@example.com&wait=10"
        )
        assert resp.ok, await resp.text()
        await _check(page, f"/dev/inbox/{(await resp.json())['ID']}", tmp_path)
        await expect(page.locator(".reset-panel .badge")).to_have_text("valid")
        # An error next to a field: submit the request form empty.
        await page.goto("/reset_password_request")
        await page.locator("form button[type=submit]").first.click()
        await _check(page, page.url.removeprefix(str(server.make_url("/")).rstrip("/")), tmp_path)
    finally:
        await context.close()


async def test_the_light_scheme_stays_light(
    browser: Browser, server: TestServer, tmp_path: Path
) -> None:
    context = await browser.new_context(
        base_url=str(server.make_url("/")).rstrip("/"), color_scheme="light"
    )
    try:
        page = await context.new_page()
        await page.goto("/dev/inbox")
        body_bg = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert _luminance(body_bg) > 0.8
    finally:
        await context.close()
