"""``/readyz`` shows the relay's address, error and hint to this machine's own
clients only, by the rule the dev inbox applies: a reverse proxy on the same
host (listed in ``trusted_proxies`` or not) and a DNS-rebinding page connect
from loopback too, and get the state without the details."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app

from .helpers import ConfigFactory

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

PRIVATE = {"address", "error", "hint"}

OUTSIDERS = [
    # The reported attack: a proxy on this host, not listed in trusted_proxies.
    {"Host": "reset.example.com", "X-Forwarded-For": "203.0.113.9"},
    {"Host": "reset.example.com"},  # a proxy that adds nothing but the public Host
    {"X-Real-IP": "203.0.113.9"},
    {"Client-IP": "203.0.113.9"},
    {"X_Forwarded_For": "203.0.113.9"},
    {"Forwarded": "for=203.0.113.9"},
    {"Origin": "http://rebind.attacker.example"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
]


@pytest.fixture
async def site(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient[Any, Any]:
    cfg = make_config(
        server={"public_url": "http://reset.example.com"}, dev_inbox={"enabled": False}
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
    return client


async def test_a_local_client_sees_the_relay_details(site: TestClient[Any, Any]) -> None:
    for headers in ({}, {"Host": "localhost:8080"}, {"Origin": "http://127.0.0.1:8080"}):
        resp = await site.get("/readyz", headers=headers)
        assert resp.status == 200
        relay = (await resp.json())["relay"]
        assert PRIVATE <= set(relay), headers
        mail = site.app[keys.config].mail
        assert relay["address"] == f"{mail.server}:{mail.port}"


@pytest.mark.parametrize("headers", OUTSIDERS, ids=lambda h: ",".join(h))
async def test_a_request_through_a_local_proxy_or_another_site_gets_no_relay_details(
    site: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    resp = await site.get("/readyz", headers=headers)
    assert resp.status == 200
    ready = await resp.json()
    assert ready["database"] == "ok"
    assert "state" in ready["relay"]
    assert not PRIVATE & set(ready["relay"]), ready


async def test_a_health_check_without_host_gets_no_relay_details(
    site: TestClient[Any, Any],
) -> None:
    """HAProxy's ``option httpchk``: HTTP/1.0, no Host. Answered, without details
    (nothing says it is local: it may come through a proxy)."""
    server = site.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.0 200 ")
    assert b'"state"' in answer and b'"address"' not in answer
