"""The JSON API against the real app: every answer and every error code, each
checked against the shipped OpenAPI description (tests/openapi_check.py)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.config import ConfigError
from resetd.hash_queue import HashQueue, Standing
from resetd.passwords import hashing_threads
from resetd.users import User, fingerprint

from .db_rows import db_rows, record_token
from .helpers import GOOD_PASSWORD, NEW_PASSWORD, ConfigFactory, add_user, eventually, sign_in
from .openapi_check import check_answer

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

API = "/api/v1"
REQUESTS = f"{API}/reset-requests"
RESETS = f"{API}/password-resets"
JSON = {"Content-Type": "application/json"}


async def _post(
    client: TestClient[Any, Any], path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    """POST a JSON body; (status, checked body, response) after the description's check."""
    data: Any = body if isinstance(body, (bytes, str)) else json.dumps(body)
    if isinstance(data, bytes) and len(data) > 65536:
        data = io.BytesIO(data)  # aiohttp streams it rather than warn
    resp = await client.post(path, data=data, headers=JSON if headers is None else headers)
    value = await check_answer(resp, path.removeprefix(API), "POST")
    return resp.status, value, resp


def _codes(value: Any) -> list[str]:
    return [problem["code"] for problem in value["errors"]]


async def _queued(client: TestClient[Any, Any]) -> int:
    row = await db_rows(client.app).fetchone("SELECT COUNT(*) AS n FROM reset_requests")
    assert row is not None
    return int(row["n"])


async def _live_token(client: TestClient[Any, Any], user: User, age: float = 0) -> str:
    token, claims = client.app[keys.codec].mint(user.id, fingerprint(user), now=time.time() - age)
    await record_token(client.app, claims)
    return token


async def _mailed_link(client: TestClient[Any, Any], to: str = "susan@example.com") -> str:
    async def link() -> str | None:
        resp = await client.get(f"/dev/inbox/api/v1/message/latest/links?query=to:{to}")
        if resp.status != 200:
            return None
        links = (await resp.json())["Links"]
        return next((link["URL"] for link in links if link["Kind"] == "reset"), None)

    found: str = await eventually(link)
    return found


# --- reset-requests ---------------------------------------------------------


async def test_reset_request_is_accepted_alike_for_every_address(
    client: TestClient[Any, Any],
) -> None:
    await add_user(client.app)
    answers = []
    for email in ("susan@example.com", "nobody@example.com", "not an address", "x" * 300):
        status, value, resp = await _post(client, REQUESTS, {"email": email})
        assert (status, value) == (202, {"status": "accepted"})
        assert "Set-Cookie" not in resp.headers  # the API takes and gives no cookies
        answers.append(sorted(k for k in resp.headers if k not in ("Date", "Content-Length")))
    assert all(a == answers[0] for a in answers)
    assert await _queued(client) == 4
    # Only the account's address gets a mail, as with the form.
    link = await _mailed_link(client)
    assert link.startswith("http://localhost:8080/reset_password/")


async def test_reset_request_over_the_ip_limit_is_429_with_retry_after(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(limits={"requests_per_ip": 2})))
    for _ in range(2):
        assert (await _post(client, REQUESTS, {"email": "a@example.com"}))[0] == 202
    status, value, resp = await _post(client, REQUESTS, {"email": "a@example.com"})
    assert status == 429 and _codes(value) == ["rate_limited"]
    assert int(resp.headers["Retry-After"]) > 0
    assert await _queued(client) == 2


async def test_empty_or_missing_email_is_a_400_with_its_field(
    client: TestClient[Any, Any],
) -> None:
    status, value, _ = await _post(client, REQUESTS, {"email": "  "})
    assert status == 400 and value["errors"] == [
        {
            "code": "email_required",
            "message": "Enter the email address of your account.",
            "field": "email",
        }
    ]
    for body in ({}, {"email": ["a@example.com", "b@example.com"]}, {"email": 1}):
        status, value, _ = await _post(client, REQUESTS, body)
        assert status == 400 and _codes(value) == ["invalid_request"]
        assert value["errors"][0]["field"] == "email"
    assert await _queued(client) == 0


# --- password-resets --------------------------------------------------------


async def test_password_reset_sets_the_password_once(client: TestClient[Any, Any]) -> None:
    await add_user(client.app)
    assert (await _post(client, REQUESTS, {"email": "susan@example.com"}))[0] == 202
    token = (await _mailed_link(client)).rsplit("/", 1)[1]
    status, value, resp = await _post(client, RESETS, {"token": token, "password": NEW_PASSWORD})
    assert status == 204 and value is None
    assert "Set-Cookie" not in resp.headers
    # Single use: the same token again changes nothing.
    status, value, _ = await _post(client, RESETS, {"token": token, "password": "another " * 3})
    assert status == 400 and _codes(value) == ["token_invalid"]
    assert (await sign_in(client, "susan", GOOD_PASSWORD)).status == 400
    assert (await sign_in(client, "susan", NEW_PASSWORD)).status == 303
    row = await db_rows(client.app).fetchone(
        "SELECT COUNT(*) AS n FROM audit WHERE event = 'token_use' AND outcome = 'rejected: used'"
    )
    assert row is not None and row["n"] == 1


async def test_concurrent_password_resets_with_one_token_succeed_once(
    client: TestClient[Any, Any],
) -> None:
    user = await add_user(client.app)
    token = await _live_token(client, user)
    body = json.dumps({"token": token, "password": NEW_PASSWORD})
    answers = await asyncio.gather(
        *(client.post(RESETS, data=body, headers=JSON) for _ in range(5))
    )
    assert sorted(r.status for r in answers) == [204, 400, 400, 400, 400]


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("", "password_required"),
        ("short one", "password_too_short"),
        ("x" * 257, "password_too_long"),
        ("polniypizdec0211", "password_common"),
        ("susan@example.com!", "password_like_identity"),
    ],
)
async def test_a_refused_password_says_why_in_a_code(
    client: TestClient[Any, Any], password: str, code: str
) -> None:
    user = await add_user(client.app)
    token = await _live_token(client, user)
    status, value, _ = await _post(client, RESETS, {"token": token, "password": password})
    assert status == 400 and _codes(value) == [code]
    assert value["errors"][0]["field"] == "password"
    # Nothing changed: the token still sets a good password.
    assert (await _post(client, RESETS, {"token": token, "password": NEW_PASSWORD}))[0] == 204


async def test_refused_passwords_burn_the_token_as_the_form_does(
    client: TestClient[Any, Any],
) -> None:
    user = await add_user(client.app)
    token = await _live_token(client, user)
    limit = client.app[keys.config].limits.failed_posts_per_token
    codes = []
    for _ in range(limit):
        _, value, _ = await _post(client, RESETS, {"token": token, "password": "short"})
        codes.append(_codes(value)[0])
    assert codes == ["password_too_short"] * (limit - 1) + ["token_invalid"]
    status, value, _ = await _post(client, RESETS, {"token": token, "password": NEW_PASSWORD})
    assert status == 400 and _codes(value) == ["token_invalid"]


async def test_expired_forged_and_unknown_tokens_are_told_apart_only_by_expiry(
    client: TestClient[Any, Any],
) -> None:
    user = await add_user(client.app)
    expired = await _live_token(client, user, age=3600)
    status, value, _ = await _post(client, RESETS, {"token": expired, "password": NEW_PASSWORD})
    assert status == 400 and _codes(value) == ["token_expired"]
    assert value["errors"][0]["field"] == "token"
    not_recorded, _ = client.app[keys.codec].mint(user.id, fingerprint(user))
    for token in ("garbage", "", "é" * 10, "a" * 5000, not_recorded, expired + "x"):
        status, value, _ = await _post(client, RESETS, {"token": token, "password": NEW_PASSWORD})
        assert status == 400 and _codes(value) == ["token_invalid"], token[:20]


async def test_password_reset_needs_both_strings(client: TestClient[Any, Any]) -> None:
    for body, field in (
        ({"password": NEW_PASSWORD}, "token"),
        ({"token": 5, "password": NEW_PASSWORD}, "token"),
        ({"token": "t"}, "password"),
        ({"token": "t", "password": None}, "password"),
    ):
        status, value, _ = await _post(client, RESETS, body)
        assert status == 400 and _codes(value) == ["invalid_request"]
        assert value["errors"][0]["field"] == field


# --- bodies, types, methods -------------------------------------------------


@pytest.mark.parametrize("path", [REQUESTS, RESETS])
@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", JSON, 400, "invalid_json"),
        (b'{"email": "\\ud800"}', JSON, 400, "invalid_json"),
        (b"\xff\xfe", JSON, 400, "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, JSON, 400, "invalid_json"),
        (
            b'{"email": "a@example.com"}',
            {"Content-Type": "application/json; charset=utf-16"},
            400,
            "invalid_json",
        ),
        (b"[1, 2]", JSON, 400, "invalid_request"),
        (b'"a@example.com"', JSON, 400, "invalid_request"),
        (b"", JSON, 400, "invalid_request"),
        (
            b'{"email": "a@example.com"}',
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (
            b"email=a%40example.com",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name=email\r\n\r\na@example.com\r\n--b--\r\n",
            {"Content-Type": "multipart/form-data; boundary=b"},
            415,
            "unsupported_media_type",
        ),
        (b'{"email": "a@example.com"}', {}, 415, "unsupported_media_type"),
        (b'{"email": "' + b"a" * (1024 * 1024) + b'"}', JSON, 413, "body_too_large"),
    ],
)
async def test_a_body_that_cannot_be_read_is_a_clear_4xx(
    client: TestClient[Any, Any],
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    got, value, _ = await _post(client, path, body, headers)
    assert (got, _codes(value)) == (status, [code])
    assert await _queued(client) == 0


async def test_a_cross_site_form_cannot_reach_the_api(client: TestClient[Any, Any]) -> None:
    """What a hostile page can send without a preflight: a form or a "simple"
    fetch. Either its type or its Origin is refused before anything is queued."""
    for headers, status in (
        ({"Content-Type": "text/plain", "Origin": "https://evil.example"}, 403),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/json", "Origin": "https://evil.example"}, 403),
        ({"Content-Type": "application/json", "Origin": "null"}, 403),
    ):
        got, value, resp = await _post(client, REQUESTS, '{"email": "susan@example.com"}', headers)
        assert got == status, headers
        assert "Access-Control-Allow-Origin" not in resp.headers
        if status == 403:
            assert _codes(value) == ["origin_not_allowed"]
    assert await _queued(client) == 0
    # resetd's own origin is not a cross-site one.
    own = {**JSON, "Origin": "http://localhost:8080"}
    assert (await _post(client, REQUESTS, {"email": "a@example.com"}, own))[0] == 202


async def test_other_methods_and_paths_are_json_errors(client: TestClient[Any, Any]) -> None:
    resp = await client.get(REQUESTS)
    assert resp.status == 405
    assert _codes(await resp.json()) == ["method_not_allowed"]
    resp = await client.put(RESETS, json={})
    assert resp.status == 405
    resp = await client.get(f"{API}/nothing-here")
    assert resp.status == 404
    assert _codes(await resp.json()) == ["not_found"]


# --- CORS ---------------------------------------------------------------------

FRONT = "http://127.0.0.1:5173"


@pytest.fixture
async def cors_client(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(make_config(api={"cors_origins": [FRONT, "https://app.example.com"]}))
    )
    return client


async def _preflight(
    client: TestClient[Any, Any], origin: str, method: str = "POST", headers: str = "content-type"
) -> Any:
    return await client.options(
        REQUESTS,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


async def test_a_listed_origin_passes_preflight_and_reads_answers(
    cors_client: TestClient[Any, Any],
) -> None:
    resp = await _preflight(cors_client, FRONT)
    await check_answer(resp, "/reset-requests", "OPTIONS")
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == FRONT
    assert resp.headers["Access-Control-Allow-Methods"] == "POST"
    assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert resp.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    origin = {**JSON, "Origin": FRONT}
    status, _, resp = await _post(cors_client, REQUESTS, {"email": "a@example.com"}, origin)
    assert status == 202
    assert resp.headers["Access-Control-Allow-Origin"] == FRONT
    assert resp.headers["Vary"] == "Origin"
    assert resp.headers["Access-Control-Expose-Headers"] == "Retry-After"
    # Errors too, so the page can read what was wrong.
    status, value, resp = await _post(cors_client, RESETS, {"token": "x", "password": "y"}, origin)
    assert status == 400 and _codes(value) == ["token_invalid"]
    assert resp.headers["Access-Control-Allow-Origin"] == FRONT


async def test_other_origins_get_no_cors_headers(cors_client: TestClient[Any, Any]) -> None:
    for origin in (
        "http://127.0.0.1:5174",
        "https://app.example.com.evil.example",
        "null",
        "HTTP://127.0.0.1:5173",
        f"{FRONT}/",
    ):
        resp = await _preflight(cors_client, origin)
        value = await check_answer(resp, "/reset-requests", "OPTIONS")
        assert resp.status == 403 and _codes(value) == ["origin_not_allowed"], origin
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert resp.headers["Vary"] == "Origin"
        status, _, resp = await _post(
            cors_client, REQUESTS, {"email": "a@example.com"}, {**JSON, "Origin": origin}
        )
        assert status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    # A listed origin asking for more than POST with Content-Type.
    for method, headers in (("PUT", "content-type"), ("POST", "content-type, x-token")):
        resp = await _preflight(cors_client, FRONT, method, headers)
        value = await check_answer(resp, "/reset-requests", "OPTIONS")
        assert resp.status == 403 and _codes(value) == ["preflight_refused"]
    assert await _queued(cors_client) == 0


async def test_without_cors_origins_no_origin_is_allowed(client: TestClient[Any, Any]) -> None:
    resp = await _preflight(client, FRONT)
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "null",
        "https://app.example.com/",
        "https://App.example.com",
        "app.example.com",
        "https://app.example.com:443",
        "ftp://app.example.com",
        "https://a@app.example.com",
        "https://bücher.example",
    ],
)
def test_a_cors_origin_must_be_an_exact_origin(make_config: ConfigFactory, origin: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[api\] cors_origins: "):
        make_config(api={"cors_origins": [origin]})


# --- the description ----------------------------------------------------------


async def test_the_description_is_served_with_this_server(client: TestClient[Any, Any]) -> None:
    resp = await client.get(f"{API}/openapi.json")
    value = await check_answer(resp, "/openapi.json", "GET")
    assert value["openapi"].startswith("3.1")
    assert value["servers"] == [{"url": "http://localhost:8080/api/v1"}]
    assert set(value["paths"]) == {"/reset-requests", "/password-resets", "/openapi.json"}


async def test_the_api_lives_under_public_urls_path(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(
        create_app(make_config(server={"public_url": "http://localhost:8080/auth"}))
    )
    resp = await client.post(f"/auth{REQUESTS}", json={"email": "a@example.com"})
    assert resp.status == 202
    resp = await client.post(REQUESTS, json={"email": "a@example.com"})
    assert resp.status == 404
    value = await (await client.get(f"/auth{API}/openapi.json")).json()
    assert value["servers"] == [{"url": "http://localhost:8080/auth/api/v1"}]


async def test_no_hashing_place_is_503_busy_and_the_token_still_works(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    threads = hashing_threads()
    client = await aiohttp_client(
        create_app(make_config(limits={"logins_in_progress": threads + 1}))
    )
    user = await add_user(client.app)
    token = await _live_token(client, user)
    queue: HashQueue = client.app[keys.hash_queue]
    release = threading.Event()
    holders = [
        asyncio.create_task(queue.run(Standing(f"holder{n}"), release.wait, 10))
        for n in range(threads)
    ]
    try:
        await eventually(_async(lambda: queue.running == threads))
        # The last place is held by a client in good standing, as the API's caller is.
        waiter = asyncio.create_task(queue.run(Standing("198.51.100.1"), time.sleep, 0))
        await eventually(_async(lambda: queue.waiting == 1))
        status, value, resp = await _post(
            client, RESETS, {"token": token, "password": NEW_PASSWORD}
        )
        assert status == 503 and _codes(value) == ["busy"]
        assert resp.headers["Retry-After"] == "1"
    finally:
        release.set()
    await asyncio.gather(*holders, waiter)
    assert (await _post(client, RESETS, {"token": token, "password": NEW_PASSWORD}))[0] == 204


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def test_a_body_that_does_not_arrive_is_408_request_timeout(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(server={"body_timeout": 0.5})))
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            f"POST {REQUESTS} HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            '{"email": '.encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408"), head
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
        assert _codes(body) == ["request_timeout"]
    finally:
        writer.close()
    assert await _queued(client) == 0
