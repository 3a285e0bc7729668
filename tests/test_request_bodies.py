"""Whatever a client puts in a body, a header or a charset, the answer is a 4xx, never a 500.

Forms (every page's), the inbox API's JSON bodies, the User-Agent that reaches
the audit trail and the inbox's basic credentials are all decoded from bytes a
stranger chose: an unknown charset, utf-7's lone surrogates, invalid UTF-8, JSON
nested thousands deep.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app

from .helpers import (
    TEST_SECRET,
    ConfigFactory,
    add_user,
    csrf_from,
    eventually,
    set_new_password,
)
from .processes import Server, write_config
from .relays import Relay
from .test_tokens import mailed_token

TOKEN = "AAAAtokenPART1.BBBBtokenPART2.CCCCtokenPART3"
FORM_PAGES = [
    "/login",
    "/logout",
    "/reset_password_request",
    "/reset_password",
    f"/reset_password/{TOKEN}",
    "/dev/inbox/delete",
    "/dev/inbox/1/delete",
]


def multipart(csrf: str, part_headers: bytes, value: bytes) -> tuple[bytes, str]:
    def part(name: str, headers: bytes, data: bytes) -> bytes:
        disposition = f'Content-Disposition: form-data; name="{name}"\r\n'.encode()
        return b"--b0undary\r\n" + disposition + headers + b"\r\n" + data + b"\r\n"

    body = part("csrf_token", b"", csrf.encode()) + part("email", part_headers, value)
    return body + b"--b0undary--\r\n", "multipart/form-data; boundary=b0undary"


def hostile_form(kind: str, csrf: str) -> tuple[bytes, str]:
    """(body, Content-Type) of one kind of undecodable form, with a valid CSRF token."""
    fields = f"csrf_token={csrf}&email=%2B2AA-%40example.com&username=%2B2AA-&password=%2B2AA-"
    urlencoded = "application/x-www-form-urlencoded"
    if kind == "unknown charset":
        return fields.encode(), f"{urlencoded}; charset=x-no-such-codec"
    if kind == "utf-7 (lone surrogates)":
        return fields.encode(), f"{urlencoded}; charset=utf-7"
    if kind == "invalid utf-8":
        return f"csrf_token={csrf}&email=".encode() + b"\xff\xfe@example.com", urlencoded
    if kind == "part with unknown charset":
        return multipart(csrf, b"Content-Type: text/plain; charset=x-no-such-codec\r\n", b"a@b")
    if kind == "part in utf-7 (lone surrogates)":
        return multipart(csrf, b"Content-Type: text/plain; charset=utf-7\r\n", b"+2AA-@b.example")
    raise AssertionError(kind)


FORM_KINDS = [
    "unknown charset",
    "utf-7 (lone surrogates)",
    "invalid utf-8",
    "part with unknown charset",
    "part in utf-7 (lone surrogates)",
]


@pytest.mark.parametrize("kind", FORM_KINDS)
async def test_undecodable_forms_are_400_on_every_page(
    client: TestClient[Any, Any], kind: str
) -> None:
    csrf = await csrf_from(client, "/reset_password_request")
    for page in FORM_PAGES:
        body, content_type = hostile_form(kind, csrf)
        resp = await client.post(
            page, data=body, headers={"Content-Type": content_type}, allow_redirects=False
        )
        assert resp.status == 400, f"{page}: {resp.status}"


async def test_new_password_form_in_utf7_is_400_with_a_live_token(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    await add_user(rclient.app)
    token = await mailed_token(rclient, relay)
    assert (await rclient.get(f"/reset_password/{token}", allow_redirects=False)).status == 303
    csrf = await csrf_from(rclient, "/reset_password")
    password = "+2AA-" + "a fine long pass phrase"
    resp = await rclient.post(
        "/reset_password",
        data=f"csrf_token={csrf}&password={password}&password2={password}".replace("+", "%2B"),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-7"},
        allow_redirects=False,
    )
    assert resp.status == 400
    # The link is still good for a real submission.
    assert (await set_new_password(rclient, token)).status == 303


async def test_form_with_unknown_charset_is_400_and_its_token_path_stays_out_of_the_log(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "resetd.toml",
        {
            "server": {"port": 0, "secret_key": TEST_SECRET},
            "database": {"path": str(tmp_path / "resetd.db")},
            "mail": {"server": "127.0.0.1", "port": 0},
        },
    )
    server = Server(config, tmp_path)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = b"csrf_token=x&password=a&password2=a"
        writer.write(
            f"POST /reset_password/{TOKEN} HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/x-www-form-urlencoded; charset=x-no-such-codec\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 400"), status_line
        assert await server.terminate() == 0
    finally:
        await server.kill()
    log = server.logs()
    assert "/reset_password/<redacted>" in log  # the access log line
    for part in TOKEN.split("."):
        assert part not in log, log


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"IDs": []}', "application/json; charset=x-no-such-codec"),
        ('{"IDs": []}'.encode("utf-16"), "application/json; charset=utf-16"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"IDs": ["\\ud800"], "Read": true}', "application/json"),
        (b'{"\\udfff": 1}', "application/json"),
        (b'{"IDs": ["\xff"]}', "application/json"),
    ],
    ids=["unknown charset", "utf-16", "deep nesting", "lone surrogate", "surrogate key", "bytes"],
)
async def test_inbox_api_json_bodies_that_cannot_be_decoded_are_400(
    client: TestClient[Any, Any], body: bytes, content_type: str
) -> None:
    for method in ("PUT", "DELETE"):
        resp = await client.request(
            method, "/dev/inbox/api/v1/messages", data=body, headers={"Content-Type": content_type}
        )
        assert resp.status == 400, f"{method}: {resp.status}"
        assert "Error" in await resp.json()


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` as is (bytes no HTTP client would send) and return the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_reset_request_with_a_user_agent_that_is_not_utf8_is_queued_and_audited(
    client: TestClient[Any, Any],
) -> None:
    csrf = await csrf_from(client, "/reset_password_request")
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
    body = f"csrf_token={csrf}&email=susan%40example.com".encode()
    status = await raw_exchange(
        client.port,
        b"POST /reset_password_request HTTP/1.1\r\nHost: localhost\r\n"
        b"Cookie: " + cookie.encode() + b"\r\n"
        b"User-Agent: Mozilla\xff\xfe \xc2\x9b31m\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body,
    )
    assert status.startswith(b"HTTP/1.1 303"), status

    async def audited() -> list[str | None]:
        events = await client.app[keys.audit].recent()
        return [e.user_agent for e in events if e.event == "reset_requested"]

    assert await eventually(audited) == ["Mozilla\ufffd\ufffd \ufffd31m"]


async def test_inbox_basic_credentials_that_are_not_ascii_get_401(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    password = "a-long-inbox-password"
    client = await aiohttp_client(create_app(make_config(dev_inbox={"password": password})))
    status = await raw_exchange(
        client.port,
        b"GET /dev/inbox/api/v1/info HTTP/1.1\r\nHost: localhost\r\n"
        b"Authorization: Basic \xc3\xa9\xff\r\nConnection: close\r\n\r\n",
    )
    assert status.startswith(b"HTTP/1.1 401"), status
