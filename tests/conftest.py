"""Shared fixtures: a real app on a real loopback port, real SQLite files, and the
real embedded SMTP sink on a free port."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.config import Config
from resetd.config_load import load_config
from resetd.passwords import Hasher
from resetd.users import User

from .relays import Received, Relay

TEST_SECRET = "test-secret-key-0123456789abcdef-0123456789"
GOOD_PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "purple elephant sings at midnight"

ConfigFactory = Callable[..., Config]


def _merge(base: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]]) -> None:
    for section, values in extra.items():
        base.setdefault(section, {}).update(values)


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Config with test defaults (free ports, files under tmp_path, cheap argon2).

    Keyword arguments are sections: ``make_config(mail={"port": 2525})``.
    """

    def make(**sections: dict[str, Any]) -> Config:
        base: dict[str, dict[str, Any]] = {
            "server": {"secret_key": TEST_SECRET, "public_url": "http://localhost:8080"},
            "database": {"path": str(tmp_path / "resetd.db")},
            "mail": {"server": "127.0.0.1", "port": 0, "sender": "resetd <no-reply@example.test>"},
            "dev_inbox": {"enabled": True, "smtp_port": 0, "path": str(tmp_path / "inbox.db")},
            "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
        }
        _merge(base, sections)
        return load_config(None, env={}, overrides=base)

    return make


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config()


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]], config: Config
) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(config))


async def add_user(
    app: web.Application,
    username: str = "susan",
    email: str = "susan@example.com",
    password: str = GOOD_PASSWORD,
) -> User:
    hasher: Hasher = app[keys.hasher]
    return await app[keys.users].add(email, username, await hasher.hash(password))


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


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    """A real accepting SMTP relay on a free loopback port."""
    r = Relay()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def rclient(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    make_config: ConfigFactory,
    relay: Relay,
) -> TestClient[Any, Any]:
    """The app with the dev inbox off and [mail] pointing at ``relay``."""
    return await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}, mail={"port": relay.port}))
    )


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
