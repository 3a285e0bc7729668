"""What tests share besides fixtures: test values, and steps a user takes through
the real app (sign in, ask for a reset, follow the link)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.config import Config
from resetd.passwords import Hasher
from resetd.users import User

from .relays import Received

TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789"
GOOD_PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "purple elephant sings at midnight"

ConfigFactory = Callable[..., Config]


def merge_sections(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]]) -> None:
    """Overlay config ``extra`` on ``base``, section by section."""
    for section, values in extra.items():
        base.setdefault(section, {}).update(values)


async def add_user(
    app: web.Application,
    username: str = "susan",
    email: str = "susan@example.com",
    password: str = GOOD_PASSWORD,
) -> User:
    hasher: Hasher = app[keys.hasher]
    return await app[keys.storage].users.add(email, username, await hasher.hash(password))


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


async def csrf_from(client: TestClient[Any, Any], path: str) -> str:
    """GET a page (keeping its session cookie) and return its form's CSRF token."""
    resp = await client.get(path)
    text = await resp.text()
    match = CSRF_RE.search(text)
    assert match, f"no CSRF token on {path} (status {resp.status})"
    return match.group(1)


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


LINK_RE = re.compile(r"http://localhost:8080/reset_password/([A-Za-z0-9_\-.]+)")


def token_in(received: Received) -> str:
    body = received.message.get_body(("plain",))
    assert body is not None
    match = LINK_RE.search(body.get_content())
    assert match, "no reset link in the mail"
    return match.group(1)


async def request_reset(
    client: TestClient[Any, Any], email: str | list[str], **kw: Any
) -> ClientResponse:
    csrf = await csrf_from(client, "/reset_password_request")
    emails = email if isinstance(email, list) else [email]
    data = [("csrf_token", csrf), *(("email", e) for e in emails)]
    return await client.post("/reset_password_request", data=data, allow_redirects=False, **kw)


async def set_new_password(
    client: TestClient[Any, Any],
    token: str,
    password: str = NEW_PASSWORD,
    password2: str | None = None,
) -> ClientResponse:
    """Follow the mailed link like a browser, then submit the form."""
    resp = await client.get(f"/reset_password/{token}", allow_redirects=False)
    if resp.status != 303:
        return resp
    csrf = await csrf_from(client, "/reset_password")
    return await client.post(
        "/reset_password",
        data={"csrf_token": csrf, "password": password, "password2": password2 or password},
        allow_redirects=False,
    )


async def sign_in(client: TestClient[Any, Any], username: str, password: str) -> ClientResponse:
    csrf = await csrf_from(client, "/login")
    return await client.post(
        "/login",
        data={"csrf_token": csrf, "username": username, "password": password},
        allow_redirects=False,
    )
