"""Debian's Chromium through Playwright, for tests that drive a real browser.

Browsers are never downloaded: the tests use ``/usr/bin/chromium`` and skip
when it is not installed (CI installs it), as the dev inbox's browser tests do.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 10_000


def free_port() -> int:
    """A loopback port free right now, so public_url can name it before the app starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A launched Chromium, closed after; skips the test when there is none."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=WAIT_MS
        )
        try:
            yield launched
        finally:
            await launched.close()
