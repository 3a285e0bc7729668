"""Sign-in helpers: a clock the tests move, and sign-in POSTs from chosen clients."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from .helpers import csrf_from

WRONG = "not the password, just a guess"


class Clock:
    """Wall-clock seconds that move only when told (``create_app(cfg, clock=…)``)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def post_login(
    client: TestClient[Any, Any],
    csrf: str,
    username: str,
    password: str = WRONG,
    *,
    ip: str | None = None,
    remember: bool = False,
) -> ClientResponse:
    """POST /login with ``csrf`` (from :func:`login_csrf`); ``ip`` arrives as
    X-Forwarded-For, which the app believes when 127.0.0.1 is a trusted proxy."""
    data = {"csrf_token": csrf, "username": username, "password": password}
    if remember:
        data["remember_me"] = "y"
    headers = {"X-Forwarded-For": ip} if ip else {}
    resp = await client.post("/login", data=data, headers=headers, allow_redirects=False)
    await resp.read()
    return resp


async def login_csrf(client: TestClient[Any, Any]) -> str:
    return await csrf_from(client, "/login")


def headers_but_date(resp: ClientResponse) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in resp.headers.items() if k.lower() != "date")
