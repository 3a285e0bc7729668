"""The dev inbox is reachable from this machine only: attacks through a proxy,
DNS rebinding, other sites' pages and password guessing, on the real server.
(The SMTP side's password is in test_inbox_sink_auth.py.)"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from resetd.app import create_app
from resetd.inbox import keys as ikeys
from resetd.inbox.access import check_access
from tests.helpers import (
    GOOD_PASSWORD,
    NEW_PASSWORD,
    ConfigFactory,
    add_user,
    eventually,
    request_reset,
    sign_in,
)
from tests.inbox_helpers import make_message, send_smtplib

API = "/dev/inbox/api/v1"
INBOX_PASSWORD = "inbox-password-0123456789"
AppClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def inbox_paths(mid: str) -> list[tuple[str, str]]:
    """Every kind of inbox request: pages, API, events, downloads, deletes."""
    return [
        ("GET", "/dev/inbox"),
        ("GET", f"/dev/inbox/{mid}"),
        ("GET", f"/dev/inbox/{mid}/download"),
        ("GET", "/dev/inbox/events"),
        ("GET", "/dev/inbox/livez"),
        ("GET", f"{API}/messages"),
        ("GET", f"{API}/search?query=to:susan@example.com"),
        ("GET", f"{API}/message/{mid}"),
        ("GET", f"{API}/message/latest"),
        ("GET", f"{API}/message/latest/links"),
        ("GET", f"{API}/message/{mid}/headers"),
        ("GET", f"{API}/message/{mid}/raw"),
        ("GET", f"{API}/message/{mid}/part/1"),
        ("GET", f"{API}/info"),
        ("HEAD", f"{API}/message/latest/links"),
        ("PUT", f"{API}/messages"),
        ("DELETE", f"{API}/messages"),
        ("POST", "/dev/inbox/delete"),
        ("GET", "/dev/inbox/no/such/page"),
    ]


async def captured_id(client: TestClient[Any, Any]) -> str:
    """Wait for the reset mail in the inbox (asked locally) and return its ID."""

    async def latest() -> Any:
        resp = await client.get(f"{API}/messages")
        return (await resp.json())["messages"]

    messages = await eventually(latest)
    return str(messages[0]["ID"])


async def assert_all_refused(
    client: TestClient[Any, Any], headers: dict[str, str], status: int = 403
) -> None:
    mid = await captured_id(client)
    for method, path in inbox_paths(mid):
        resp = await client.request(method, path, headers=headers, allow_redirects=False)
        body = await resp.read()
        assert resp.status == status, (method, path, resp.status)
        assert b"reset_password/" not in body, (method, path)


@pytest.fixture
async def proxied(aiohttp_client: AppClient, make_config: ConfigFactory) -> TestClient[Any, Any]:
    """The attack's set-up, built without ``serve`` (which now refuses it): the
    inbox on, [mail] pointing at it, a public URL, listening on loopback. (Plain
    http: the test client would keep an https site's Secure cookie to itself.)"""
    cfg = make_config(server={"public_url": "http://reset.example.com"})
    # [mail] names the inbox's configured address: mail goes where the sink bound.
    assert (cfg.mail.server, cfg.mail.port) == (cfg.dev_inbox.smtp_host, cfg.dev_inbox.smtp_port)
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    return client


# --- through a reverse proxy ---------------------------------------------------


PROXY_HEADERS = [
    {"X-Forwarded-For": "203.0.113.9"},
    {"Forwarded": "for=203.0.113.9;host=reset.example.com;proto=https"},
    {"X-Forwarded-Host": "reset.example.com"},
    {"X-Real-IP": "203.0.113.9"},
    {"X-Forwarded-Proto": "https"},
    {"Via": "1.1 proxy"},
    {"Client-IP": "203.0.113.9"},
    {"X_Forwarded_For": "203.0.113.9"},  # "_" for "-", as CGI-style gateways read it
    {"x_real_ip": "203.0.113.9"},
    {"X-Originating-IP": "203.0.113.9"},
    {"Forwarded-For": "203.0.113.9"},
]


@pytest.mark.parametrize("extra", PROXY_HEADERS, ids=lambda h: next(iter(h)))
async def test_a_stranger_behind_a_local_proxy_cannot_read_the_inbox(
    proxied: TestClient[Any, Any], extra: dict[str, str]
) -> None:
    """The issue's attack: through a proxy on the same host, ask a reset for
    susan and read the link from the inbox. Every inbox request is refused."""
    stranger = {"Host": "reset.example.com", **extra}
    resp = await request_reset(proxied, "susan@example.com", headers=stranger)
    assert resp.status == 303  # the reset pages themselves are served through the proxy
    await assert_all_refused(proxied, stranger)
    # The proxy headers alone, with a loopback Host, are refused just the same.
    await assert_all_refused(proxied, extra)


async def test_the_whole_takeover_fails_through_a_proxy(proxied: TestClient[Any, Any]) -> None:
    """Request a reset, read the link from the API, set a password, sign in:
    the chain breaks at reading the link."""
    client = proxied
    stranger = {"Host": "reset.example.com", "X-Forwarded-For": "203.0.113.9"}
    assert (await request_reset(client, "susan@example.com", headers=stranger)).status == 303
    await captured_id(client)  # it arrived (asked locally)
    resp = await client.get(f"{API}/message/latest/links", headers=stranger)
    assert resp.status == 403
    assert (await resp.json()) == {
        "Error": "The dev inbox answers requests from this machine only."
    }
    # susan's password is untouched: nobody got in.
    assert (await sign_in(client, "susan", GOOD_PASSWORD)).status == 303
    assert (await sign_in(client, "susan", NEW_PASSWORD)).status != 303


# --- DNS rebinding, other sites' pages -----------------------------------------


@pytest.mark.parametrize(
    "host",
    ["rebind.attacker.example:8080", "rebind.attacker.example", "203.0.113.9", "[2001:db8::1]:80"],
)
async def test_dns_rebinding_host_gets_403_from_every_inbox_path(
    proxied: TestClient[Any, Any], host: str
) -> None:
    assert (await request_reset(proxied, "susan@example.com")).status == 303
    await assert_all_refused(proxied, {"Host": host})


async def test_other_sites_pages_cannot_use_the_inbox(proxied: TestClient[Any, Any]) -> None:
    assert (await request_reset(proxied, "susan@example.com")).status == 303
    await assert_all_refused(proxied, {"Origin": "http://rebind.attacker.example:8080"})
    await assert_all_refused(proxied, {"Origin": "null"})  # a sandboxed frame, say
    await assert_all_refused(proxied, {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"})


async def test_local_names_and_following_a_link_still_work(client: TestClient[Any, Any]) -> None:
    for headers in (
        {"Host": "localhost:1234"},
        {"Host": "app.localhost"},
        {"Host": "127.0.0.2:8080"},
        {"Host": "[::1]:8080"},
        {"Origin": "http://localhost:3000"},
        {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},  # a link from elsewhere
    ):
        resp = await client.get(f"{API}/messages", headers=headers)
        assert resp.status == 200, headers
    resp = await client.get("/dev/inbox", headers={"Sec-Fetch-Site": "none"})
    assert resp.status == 200


async def test_absolute_form_target_naming_another_host_is_refused(
    proxied: TestClient[Any, Any],
) -> None:
    """``GET http://evil/… HTTP/1.1``: the target's host counts, not the Host header."""
    server = proxied.server
    assert (await request_reset(proxied, "susan@example.com")).status == 303
    await captured_id(proxied)

    async def raw(target: str) -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer

    for target in (
        f"http://rebind.attacker.example{API}/message/latest/links",
        f"http://rebind.attacker.example:{server.port}/dev/inbox",
    ):
        answer = await raw(target)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
        assert b"reset_password/" not in answer
    assert (await raw(f"http://127.0.0.1{API}/messages")).startswith(b"HTTP/1.1 200")


async def test_non_loopback_peers_get_404_as_if_the_inbox_were_off(
    client: TestClient[Any, Any],
) -> None:
    """Only loopback peers exist in tests, so this one request is built by hand."""
    app = client.app

    def from_peer(remote: str) -> web.Request:
        req = make_mocked_request("GET", "/dev/inbox", headers={"Host": "127.0.0.1"}, app=app)
        return req.clone(remote=remote)

    check_access(from_peer("127.0.0.1"))
    check_access(from_peer("::1"))
    check_access(from_peer("::ffff:127.0.0.1"))  # a dual-stack socket's loopback peer
    for remote in ("203.0.113.9", "10.0.0.1", "::ffff:10.0.0.1", "unknown"):
        with pytest.raises(web.HTTPNotFound):
            check_access(from_peer(remote))


# --- allow_remote: the password, and guesses -----------------------------------


def basic(password: str, user: str = "dev") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
async def remote(aiohttp_client: AppClient, make_config: ConfigFactory) -> TestClient[Any, Any]:
    cfg = make_config(
        server={"trusted_proxies": ["127.0.0.1/32"]},
        dev_inbox={"allow_remote": True, "password": INBOX_PASSWORD},
    )
    return await aiohttp_client(create_app(cfg))


async def test_allow_remote_asks_the_password_of_every_request(
    remote: TestClient[Any, Any],
) -> None:
    await send_smtplib(remote.app, make_message("hello"))
    mid = await captured_id_with(remote, basic(INBOX_PASSWORD))
    for method, path in inbox_paths(mid):
        resp = await remote.request(method, path, allow_redirects=False)
        assert resp.status == 401, (method, path)
        if method != "HEAD":
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
    # With it, through a proxy and under the proxy's name, the inbox answers.
    proxied = {"Host": "127.0.0.1", "X-Forwarded-For": "203.0.113.9", **basic(INBOX_PASSWORD)}
    assert (await remote.get(f"{API}/messages", headers=proxied)).status == 200
    # [server] allowed_hosts still applies to it.
    foreign = {**proxied, "Host": "rebind.attacker.example"}
    assert (await remote.get(f"{API}/messages", headers=foreign)).status == 400


async def captured_id_with(client: TestClient[Any, Any], headers: dict[str, str]) -> str:
    resp = await client.get(f"{API}/messages", headers=headers)
    assert resp.status == 200
    return str((await resp.json())["messages"][0]["ID"])


async def test_wrong_passwords_are_throttled_with_retry_after(
    remote: TestClient[Any, Any],
) -> None:
    me = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(3):  # a browser's first request carries no password: not a guess
        assert (await remote.get("/dev/inbox", headers=me)).status == 401
    for n in range(10):
        resp = await remote.get(f"{API}/messages", headers={**me, **basic(f"guess-{n}")})
        assert resp.status == 401
    resp = await remote.get(f"{API}/messages", headers={**me, **basic("guess-10")})
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    # Throttled means unchecked: the right password gets the same answer now.
    resp = await remote.get(f"{API}/messages", headers={**me, **basic(INBOX_PASSWORD)})
    assert resp.status == 429 and "Retry-After" in resp.headers
    # Another client is not held up by this one's guesses.
    other = {"X-Forwarded-For": "198.51.100.8", **basic(INBOX_PASSWORD)}
    assert (await remote.get(f"{API}/messages", headers=other)).status == 200


async def test_guesses_from_many_addresses_are_throttled_together(
    remote: TestClient[Any, Any],
) -> None:
    for n in range(100):
        headers = {"X-Forwarded-For": f"198.51.100.{n}", **basic("wrong")}
        assert (await remote.get(f"{API}/info", headers=headers)).status == 401
    fresh = {"X-Forwarded-For": "192.0.2.1", **basic(INBOX_PASSWORD)}
    resp = await remote.get(f"{API}/info", headers=fresh)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


async def test_a_loopback_sink_still_takes_any_credentials_with_allow_remote(
    remote: TestClient[Any, Any],
) -> None:
    await send_smtplib(remote.app, make_message("no auth"))
    await send_smtplib(remote.app, make_message("any auth"), login=("who", "ever"))
    await remote.app[ikeys.writer].flush()
    data = await (await remote.get(f"{API}/messages", headers=basic(INBOX_PASSWORD))).json()
    assert data["total"] == 2
