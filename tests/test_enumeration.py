"""No user enumeration, no poisoned links, and limits on mail-bombing."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from resetd.app import create_app
from resetd.reset.request import SENT_MESSAGE

from .db_rows import db_rows
from .helpers import ConfigFactory, add_user, csrf_from, eventually, request_reset, token_in
from .relays import Relay

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

IGNORED_HEADERS = {"set-cookie", "date"}


def comparable(resp: ClientResponse, body: bytes) -> tuple[Any, ...]:
    headers = sorted(
        (k.lower(), v) for k, v in resp.headers.items() if k.lower() not in IGNORED_HEADERS
    )
    return resp.status, tuple(headers), body


async def answer(client: TestClient[Any, Any], email: str | list[str]) -> tuple[Any, ...]:
    resp = await request_reset(client, email)
    first = comparable(resp, await resp.read())
    follow = await client.get(resp.headers.get("Location", "/login"))
    page = await follow.text()
    assert SENT_MESSAGE in page
    return first


async def queue_drained(client: TestClient[Any, Any]) -> bool:
    rows = await db_rows(client.app).fetchall("SELECT id FROM reset_requests WHERE done_at IS NULL")
    return not rows


async def test_known_unknown_malformed_and_limited_addresses_answer_identically(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False}, mail={"port": relay.port}, limits={"mails_per_address": 1}
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    known = await answer(client, "susan@example.com")
    limited = await answer(client, "susan@example.com")  # over mails_per_address
    unknown = await answer(client, "nobody@example.com")
    malformed = await answer(client, "not an address")
    repeated = await answer(client, ["susan@example.com", "attacker@evil.test"])
    assert known == limited == unknown == malformed == repeated
    assert known[0] == 303
    await eventually(lambda: queue_drained(client))
    await asyncio.sleep(0.3)
    assert len(relay.received) == 1, "only the first, known, in-limit request sends mail"


async def test_known_and_unknown_addresses_take_about_the_same_time(
    rclient: TestClient[Any, Any],
) -> None:
    """A loose check (the handler does identical work); a real gap would be the
    user lookup or hashing on the request path, i.e. milliseconds."""
    await add_user(rclient.app)
    csrf = await csrf_from(rclient, "/reset_password_request")

    async def timed(email: str) -> float:
        started = time.perf_counter()
        resp = await rclient.post(
            "/reset_password_request",
            data={"csrf_token": csrf, "email": email},
            allow_redirects=False,
        )
        assert resp.status == 303
        return time.perf_counter() - started

    known, unknown = [], []
    for i in range(30):
        known.append(await timed("susan@example.com" if i % 2 else "SUSAN@example.com"))
        unknown.append(await timed(f"nobody{i}@example.com"))
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.5 < ratio < 2.0, (statistics.median(known), statistics.median(unknown))


async def test_repeated_email_parameter_sends_nothing(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    """GitLab CVE-2023-7028: a second `email` value must never receive the link."""
    await add_user(rclient.app)
    resp = await request_reset(rclient, ["susan@example.com", "attacker@evil.test"])
    assert resp.status == 303
    await eventually(lambda: queue_drained(rclient))
    await asyncio.sleep(0.3)
    assert relay.received == []


async def test_unicode_lookalikes_never_receive_the_link(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    """Django CVE-2019-19844: dotless-i and friends must not match another account,
    and a case-fold collision still mails only the stored address."""
    await add_user(rclient.app, "mike", "mike@example.org")
    await add_user(rclient.app, "hans", "strasse@example.org")
    for typed in ("mıke@example.org", "MİKE@example.org", "straße@example.org"):
        assert (await request_reset(rclient, typed)).status == 303
    await eventually(lambda: queue_drained(rclient))
    await asyncio.sleep(0.3)
    # ß case-folds to ss: the account matches, and the mail goes to the *stored* address.
    assert [r.rcpt_tos for r in relay.received] == [["strasse@example.org"]]
    assert relay.received[0].message["To"].addresses[0].addr_spec == "strasse@example.org"


async def test_host_and_forwarded_headers_never_reach_the_link(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    # Every Host answered (an unknown one is otherwise a 400 before anything runs).
    cfg = make_config(
        server={"allowed_hosts": ["*"]}, dev_inbox={"enabled": False}, mail={"port": relay.port}
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    resp = await request_reset(
        client,
        "susan@example.com",
        headers={
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "Forwarded": "host=evil.example;proto=https",
        },
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/login?notice=reset-sent"
    [mail] = await relay.wait_for(1)
    assert "evil.example" not in mail.data.decode()
    token_in(mail)  # the link is on http://localhost:8080, the configured public_url


async def test_mails_per_address_limit_survives_a_restart(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    for _ in range(2):
        assert (await request_reset(client, "susan@example.com")).status == 303
    await relay.wait_for(2)
    await client.close()
    client = await aiohttp_client(create_app(cfg))  # same database file
    for _ in range(3):
        assert (await request_reset(client, "Susan@Example.com")).status == 303
    await eventually(lambda: queue_drained(client))
    await asyncio.sleep(0.3)
    assert len(relay.received) == 3  # the default limit: 3 per address per 15 minutes


async def test_requests_per_ip_limit_answers_429_with_retry_after_for_any_address(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False}, mail={"port": relay.port}, limits={"requests_per_ip": 3}
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    for i in range(3):
        assert (await request_reset(client, f"u{i}@example.com")).status == 303
    known = await request_reset(client, "susan@example.com")
    unknown = await request_reset(client, "zed@example.com")
    assert known.status == unknown.status == 429
    waits = [int(r.headers["Retry-After"]) for r in (known, unknown)]
    assert all(1 <= wait <= 60 for wait in waits)
    # One window for both, read a moment apart, each rounded up to whole seconds:
    # a second boundary may fall between the two reads.
    assert abs(waits[0] - waits[1]) <= 1, waits
    assert without_retry_after(comparable(known, await known.read())) == without_retry_after(
        comparable(unknown, await unknown.read())
    )


def without_retry_after(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    """A :func:`comparable` answer with its status and Retry-After left out."""
    _status, headers, body = answer
    return tuple(h for h in headers if h[0] != "retry-after"), body


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    base: dict[str, Any] = {"dev_inbox": {"enabled": False}, "mail": {"port": relay.port}}
    untrusted = await aiohttp_client(create_app(make_config(**base, limits={"requests_per_ip": 2})))
    for i in range(2):
        await request_reset(untrusted, "a@example.com", headers={"X-Forwarded-For": f"10.9.9.{i}"})
    spoofed = await request_reset(
        untrusted, "a@example.com", headers={"X-Forwarded-For": "10.9.9.99"}
    )
    assert spoofed.status == 429  # rotating X-Forwarded-For does not escape the limit
    await untrusted.close()

    trusted = await aiohttp_client(
        create_app(
            make_config(
                **base,
                database={"path": str(tmp_path / "trusted.db")},  # a fresh count
                limits={"requests_per_ip": 2},
                server={"trusted_proxies": ["127.0.0.1/32", "::1/128"]},
            )
        )
    )
    for i in range(4):
        resp = await request_reset(
            trusted, "a@example.com", headers={"X-Forwarded-For": f"10.9.9.{i}"}
        )
        assert resp.status == 303  # each real client has its own budget behind the proxy
    rows = await db_rows(trusted.app).fetchall("SELECT DISTINCT client_ip FROM reset_requests")
    assert {r["client_ip"] for r in rows} == {f"10.9.9.{i}" for i in range(4)}


async def test_csrf_missing_or_wrong_is_refused_and_has_no_effect(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    await add_user(rclient.app)
    await csrf_from(rclient, "/reset_password_request")  # a session exists
    for data in (
        {"email": "susan@example.com"},
        {"email": "susan@example.com", "csrf_token": "forged"},
    ):
        resp = await rclient.post("/reset_password_request", data=data, allow_redirects=False)
        assert resp.status == 400
        assert "form has expired" in await resp.text()
    rows = await db_rows(rclient.app).fetchall("SELECT id FROM reset_requests")
    assert rows == []
    await asyncio.sleep(0.2)
    assert relay.received == []


async def test_empty_email_shows_an_error_next_to_the_field(rclient: TestClient[Any, Any]) -> None:
    resp = await request_reset(rclient, "   ")
    assert resp.status == 400
    assert 'class="field-error"' in await resp.text()
