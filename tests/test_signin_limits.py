"""Guessing passwords at /login: throttled per account and per client, answered
alike for known and unknown accounts, never locked for good, and a flood gets
quick refusals instead of starving real users of the hashing thread."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from resetd import keys
from resetd.app import create_app
from resetd.login_guard import THROTTLED
from resetd.passwords import werkzeug_scrypt_hash

from .helpers import GOOD_PASSWORD, NEW_PASSWORD, ConfigFactory, add_user, set_new_password
from .relays import Relay
from .signin_helpers import Clock, headers_but_date, login_csrf, post_login
from .test_tokens import mailed_token

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

BEHIND_PROXY = {"trusted_proxies": ["127.0.0.1"]}


async def test_wrong_passwords_for_one_account_get_429_after_the_limit_alike_for_known_and_unknown(
    aiohttp_client: Any, make_config: ConfigFactory, db_engine: str
) -> None:
    clock = Clock()  # one window for both on SQLite, so Retry-After can be compared exactly
    cfg = make_config(dev_inbox={"enabled": False})  # the defaults: 10 per account
    client = await aiohttp_client(create_app(cfg, clock=clock))
    await add_user(client.app)
    csrf = await login_csrf(client)

    last: dict[str, tuple[ClientResponse, str]] = {}
    for name in ("susan", "nobody"):
        statuses = []
        for _ in range(30):
            resp = await post_login(client, csrf, name)
            statuses.append(resp.status)
            last[name] = (resp, await resp.text())
        assert statuses == [400] * 10 + [429] * 20, name

    (known, known_body), (unknown, unknown_body) = last["susan"], last["nobody"]
    assert known_body == unknown_body
    assert THROTTLED in known_body
    known_headers, unknown_headers = headers_but_date(known), headers_but_date(unknown)
    if db_engine == "postgresql":
        # There windows follow the database's clock, not the test's. Each account's
        # began with its first failure and each Retry-After was read about as long
        # after that, but both are rounded up to whole seconds: one apart at most.
        waits = [int(r.headers["Retry-After"]) for r in (known, unknown)]
        assert abs(waits[0] - waits[1]) <= 1, waits
        known_headers, unknown_headers = (
            [h for h in headers if h[0] != "Retry-After"]
            for headers in (known_headers, unknown_headers)
        )
    assert known_headers == unknown_headers
    assert 0 < int(known.headers["Retry-After"]) <= 900
    # Throttled means throttled: the right password is refused too, unchecked.
    assert (await post_login(client, csrf, "susan", GOOD_PASSWORD)).status == 429
    # Another spelling of the identifier is the same bucket.
    assert (await post_login(client, csrf, " SUSAN ")).status == 429
    # The trail shows the 20 failures, and which of them filled a limit; the
    # refusals after them cost no audit row each.
    outcomes = Counter(
        e.outcome for e in await client.app[keys.audit].recent() if e.event == "login"
    )
    assert outcomes == {"failed": 18, "failed (account limit reached)": 2}


@pytest.mark.sqlite_only  # the app's clock; on PostgreSQL windows follow the database's
async def test_the_throttle_lifts_when_its_window_ends(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    clock = Clock()
    cfg = make_config(dev_inbox={"enabled": False})
    client = await aiohttp_client(create_app(cfg, clock=clock))
    await add_user(client.app)
    csrf = await login_csrf(client)
    for _ in range(10):
        assert (await post_login(client, csrf, "susan")).status == 400
    resp = await post_login(client, csrf, "susan", GOOD_PASSWORD, remember=True)
    assert resp.status == 429
    # The refusal is the sign-in page again, the box as it was ticked, the name not echoed.
    page = await resp.text()
    assert 'name="remember_me" type="checkbox" value="y" checked>' in page
    assert 'value="susan"' not in page
    clock.advance(int(resp.headers["Retry-After"]))
    assert (await post_login(client, csrf, "susan", GOOD_PASSWORD)).status == 303


async def test_a_right_password_does_not_count_as_a_failure(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    clock = Clock()
    client = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}), clock=clock)
    )
    await add_user(client.app)
    csrf = await login_csrf(client)
    for _ in range(9):
        assert (await post_login(client, csrf, "susan")).status == 400
    assert (await post_login(client, csrf, "susan", GOOD_PASSWORD)).status == 303
    csrf = await login_csrf(client)
    assert (await post_login(client, csrf, "susan")).status == 400  # the 10th failure
    assert (await post_login(client, csrf, "susan")).status == 429


async def test_a_successful_reset_clears_the_accounts_failed_sign_ins(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    csrf = await login_csrf(client)
    for name in ("susan", "susan@example.com"):  # both identifiers of the account
        for _ in range(10):
            await post_login(client, csrf, name)
        assert (await post_login(client, csrf, name, GOOD_PASSWORD)).status == 429

    token = await mailed_token(client, relay)
    assert (await set_new_password(client, token)).status == 303

    csrf = await login_csrf(client)
    assert (await post_login(client, csrf, "susan@example.com", NEW_PASSWORD)).status == 303
    csrf = await login_csrf(client)
    assert (await post_login(client, csrf, "susan", NEW_PASSWORD)).status == 303


async def test_wrong_passwords_from_one_client_get_429_whatever_the_accounts(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    clock = Clock()
    cfg = make_config(dev_inbox={"enabled": False}, server=BEHIND_PROXY)  # 50 per client
    client = await aiohttp_client(create_app(cfg, clock=clock))
    await add_user(client.app)
    csrf = await login_csrf(client)
    statuses = [
        (await post_login(client, csrf, f"user{n}", ip="203.0.113.9")).status for n in range(60)
    ]
    assert statuses == [400] * 50 + [429] * 10
    resp = await post_login(client, csrf, "susan", GOOD_PASSWORD, ip="203.0.113.9")
    assert resp.status == 429 and "Retry-After" in resp.headers
    # Another client is not held back by it.
    assert (await post_login(client, csrf, "user1", ip="198.51.100.7")).status == 400
    resp = await post_login(client, csrf, "susan", GOOD_PASSWORD, ip="198.51.100.7")
    assert resp.status == 303


async def test_addresses_of_one_ipv6_64_share_one_budget(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False}, server=BEHIND_PROXY, limits={"failed_logins_per_ip": 5}
    )
    client = await aiohttp_client(create_app(cfg, clock=Clock()))
    csrf = await login_csrf(client)
    statuses = [
        (await post_login(client, csrf, f"user{n}", ip=f"2001:db8:1:2::{n:x}")).status
        for n in range(1, 9)
    ]
    assert statuses == [400] * 5 + [429] * 3
    assert (await post_login(client, csrf, "user1", ip="2001:db8:1:3::1")).status == 400


async def test_a_flood_from_one_client_gets_fast_refusals_while_another_signs_in(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False},
        server=BEHIND_PROXY,
        # Real argon2 costs, so the flood's checks overlap as they would in production.
        passwords={"argon2_memory_cost": 19456, "argon2_time_cost": 2},
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    csrf = await login_csrf(client)

    async def real_user() -> ClientResponse:
        await asyncio.sleep(0.05)  # while the flood is under way
        return await post_login(client, csrf, "susan", GOOD_PASSWORD, ip="198.51.100.7")

    flood = [post_login(client, csrf, f"guess{n}", ip="203.0.113.9") for n in range(40)]
    *answers, real = await asyncio.wait_for(asyncio.gather(*flood, real_user()), timeout=60)

    assert real.status == 303
    statuses = Counter(r.status for r in answers)
    assert set(statuses) <= {400, 429}, statuses
    assert statuses[429] >= 10, statuses
    assert all(r.headers["Retry-After"] == "1" for r in answers if r.status == 429)
    queue = client.app[keys.hash_queue]
    assert (queue.running, queue.waiting) == (0, 0)


async def test_a_flood_from_many_clients_is_bounded_by_the_process_wide_limit(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False},
        server=BEHIND_PROXY,
        limits={"logins_in_progress": 4},
        passwords={"argon2_memory_cost": 19456, "argon2_time_cost": 2},
    )
    client = await aiohttp_client(create_app(cfg))
    csrf = await login_csrf(client)
    flood = [post_login(client, csrf, f"guess{n}", ip=f"203.0.113.{n}") for n in range(1, 31)]
    answers = await asyncio.wait_for(asyncio.gather(*flood), timeout=60)
    statuses = Counter(r.status for r in answers)
    assert set(statuses) <= {400, 503}, statuses
    assert statuses[503] >= 10, statuses
    assert all(r.headers["Retry-After"] == "1" for r in answers if r.status == 503)
    queue = client.app[keys.hash_queue]
    assert (queue.running, queue.waiting) == (0, 0)


async def failure_time(client: Any, csrf: str, username: str) -> float:
    started = time.perf_counter()
    resp = await post_login(client, csrf, username)
    assert resp.status == 400
    return time.perf_counter() - started


async def test_a_legacy_hash_is_refused_no_slower_than_an_unknown_account(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    # Werkzeug's pbkdf2 default costs ~30x the tests' argon2: the old answer told
    # "an account with a legacy hash" from "no account" at a glance.
    legacy = "pbkdf2:sha256:600000$saltsalt$" + "00" * 32
    cfg = make_config(dev_inbox={"enabled": False})
    first = await aiohttp_client(create_app(cfg))
    await first.app[keys.users].add("old@example.com", "olduser", legacy)
    await first.close()
    client = await aiohttp_client(create_app(cfg))  # starts with the legacy hash held
    csrf = await login_csrf(client)
    old, unknown = [], []
    for _ in range(4):
        old.append(await failure_time(client, csrf, "olduser"))
        unknown.append(await failure_time(client, csrf, "nobody"))
    # Generous: the point is the gap of a whole pbkdf2 check, not milliseconds.
    assert statistics.median(unknown) >= 0.8 * statistics.median(old), (old, unknown)


async def test_failures_take_alike_whatever_the_format_of_an_apps_hashes(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    # A host app's table holding two formats: checking unknown names against a
    # dummy of the slowest would still tell the faster format's accounts apart.
    app_db = tmp_path / "app.db"
    with sqlite3.connect(app_db) as conn:
        conn.execute(
            "CREATE TABLE user (id INTEGER PRIMARY KEY, username VARCHAR(64), "
            "email VARCHAR(120), password_hash VARCHAR(256))"
        )
        conn.executemany(
            "INSERT INTO user (username, email, password_hash) VALUES (?, ?, ?)",
            [
                ("legacy", "legacy@example.com", "pbkdf2:sha256:1200000$saltsalt$" + "00" * 32),
                ("modern", "modern@example.com", werkzeug_scrypt_hash(GOOD_PASSWORD)),
                ("nohash", "nohash@example.com", None),
            ],
        )
    conn.close()
    cfg = make_config(dev_inbox={"enabled": False}, users={"store": "sqlite", "path": str(app_db)})
    client = await aiohttp_client(create_app(cfg))
    csrf = await login_csrf(client)
    times: dict[str, list[float]] = {"legacy": [], "modern": [], "nobody": []}
    for _ in range(4):
        for name, spent in times.items():
            spent.append(await failure_time(client, csrf, name))
    slowest = statistics.median(times["legacy"])
    assert statistics.median(times["modern"]) >= 0.8 * slowest, times
    assert statistics.median(times["nobody"]) >= 0.8 * slowest, times
