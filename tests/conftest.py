"""Shared fixtures: a real app on a real loopback port, real SQLite files, and the
real embedded SMTP sink on a free port."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.config import Config, load_config
from resetd.passwords import Hasher
from resetd.users import User

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
