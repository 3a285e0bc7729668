"""[server] allowed_hosts: a request addressed to a host resetd does not answer
to gets 400 on every page (Django's ALLOWED_HOSTS); loopback names always pass."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from resetd.app import create_app
from resetd.config import ConfigError
from tests.helpers import ConfigFactory, add_user, csrf_from

AppClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
PAGES = [
    "/",
    "/login",
    "/reset_password_request",
    "/reset_password/abc.def.ghi",
    "/static/resetd.css",
    "/no/such/page",
]


@pytest.fixture
async def site(aiohttp_client: AppClient, make_config: ConfigFactory) -> TestClient[Any, Any]:
    cfg = make_config(
        server={"public_url": "http://reset.example.com"}, dev_inbox={"enabled": False}
    )
    return await aiohttp_client(create_app(cfg))


async def status_for(client: TestClient[Any, Any], host: str, path: str = "/login") -> int:
    resp = await client.get(path, headers={"Host": host}, allow_redirects=False)
    await resp.read()
    return resp.status


@pytest.mark.parametrize(
    "host",
    [
        "rebind.attacker.example:8080",
        "evil.example",
        "reset.example.com.evil.example",
        "203.0.113.9",
        "[2001:db8::1]",
        # Malformed: none of these may be read as an allowed name.
        "reset.example.com:443:443",
        "reset.example.com:https",
        "evil.example@127.0.0.1",
        "127.0.0.1 evil.example",
        "[::1",
        "",
        "ｌocalhost",  # fullwidth l
        "\u212aeset.example.com",  # Kelvin sign: lower() makes it an ASCII k
        "localhost\\evil.example",
    ],
)
async def test_unknown_host_gets_400_on_every_page(site: TestClient[Any, Any], host: str) -> None:
    for path in PAGES:
        assert await status_for(site, host, path) == 400, (host, path)


async def test_unknown_host_cannot_post_either(site: TestClient[Any, Any]) -> None:
    await add_user(site.app)
    csrf = await csrf_from(site, "/reset_password_request")
    resp = await site.post(
        "/reset_password_request",
        data={"csrf_token": csrf, "email": "susan@example.com"},
        headers={"Host": "evil.example"},
        allow_redirects=False,
    )
    assert resp.status == 400
    assert "does not answer to that host name" in await resp.text()


@pytest.mark.parametrize(
    "host",
    [
        "reset.example.com",
        "reset.example.com:443",
        "RESET.Example.COM.",
        "localhost",
        "localhost:1",
        "app.localhost:3000",
        "127.0.0.1:65535",
        "127.8.9.10",
        "[::1]:8080",
        "[::ffff:127.0.0.1]",
    ],
)
async def test_public_url_host_and_loopback_names_with_any_port_are_answered(
    site: TestClient[Any, Any], host: str
) -> None:
    assert await status_for(site, host) == 200


async def test_a_configured_list_replaces_the_public_url_host(
    aiohttp_client: AppClient, make_config: ConfigFactory
) -> None:
    cfg = make_config(
        server={
            "public_url": "https://reset.example.com",
            "allowed_hosts": [".example.org", "auth.example.net", "[2001:db8::1]"],
        }
    )
    client = await aiohttp_client(create_app(cfg))
    for host in ("example.org", "a.b.example.org:8443", "AUTH.example.net", "[2001:db8::1]:80"):
        assert await status_for(client, host) == 200, host
    for host in ("reset.example.com", "badexample.org", "example.net", "x.auth.example.net"):
        assert await status_for(client, host) == 400, host
    assert await status_for(client, "127.0.0.1") == 200


async def test_star_answers_every_host(
    aiohttp_client: AppClient, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(server={"allowed_hosts": ["*"]})))
    assert await status_for(client, "anything.example") == 200
    assert await status_for(client, "not a host") == 400  # still a well-formed Host


async def raw_get(
    client: TestClient[Any, Any], target: str, *hosts: str, version: str = "1.1"
) -> bytes:
    """The whole answer to ``GET target`` sent on a raw socket with these Host lines."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = [f"GET {target} HTTP/{version}", *(f"Host: {h}" for h in hosts), "Connection: close"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_missing_duplicate_or_absolute_form_hosts(site: TestClient[Any, Any]) -> None:
    async def status(target: str, *hosts: str, version: str = "1.1") -> bytes:
        return (await raw_get(site, target, *hosts, version=version)).split(b" ", 2)[1]

    # HTTP/1.0 may leave Host out; an absolute-form target still names one.
    assert await status("http://evil.example/login", version="1.0") == b"400"
    assert await status("http://reset.example.com/login", version="1.0") == b"200"
    # aiohttp refuses this one itself; either way it is never served.
    assert await status("/login", "reset.example.com", "evil.example") == b"400"
    # An absolute-form target's host is the one that counts (RFC 9112 3.2.2).
    assert await status("http://evil.example/login", "reset.example.com") == b"400"
    assert await status("http://reset.example.com/login", "evil.example") == b"200"


@pytest.mark.parametrize(
    "entry", ["example.com:443", "https://example.com", "exa mple.com", "*.example.com", "", "[x]"]
)
def test_a_bad_allowed_hosts_entry_is_one_line_naming_the_key(
    make_config: ConfigFactory, entry: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(server={"allowed_hosts": ["ok.example", entry]})
    assert str(info.value).startswith("[server] allowed_hosts:")
    assert "\n" not in str(info.value)


async def test_a_health_check_without_host_is_answered_but_not_by_the_inbox(
    aiohttp_client: AppClient, make_config: ConfigFactory
) -> None:
    """HAProxy's ``option httpchk`` sends ``OPTIONS / HTTP/1.0`` (or GET) with no
    Host: no attacker chose a name there, so pages answer it. The dev inbox
    still wants a loopback Host, which such a request does not have."""
    cfg = make_config(server={"public_url": "http://localhost:8080"})
    client = await aiohttp_client(create_app(cfg))
    for path in ("/readyz", "/login", "/static/resetd.css"):
        answer = await raw_get(client, path, version="1.0")
        assert answer.startswith(b"HTTP/1.0 200 "), (path, answer[:60])
    answer = await raw_get(client, "/dev/inbox/api/v1/messages", version="1.0")
    assert answer.startswith(b"HTTP/1.0 403 "), answer[:60]
    assert (await client.get("/dev/inbox/api/v1/messages")).status == 200  # with its Host
