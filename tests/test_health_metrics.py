"""``/healthz``, ``/readyz`` and ``/metrics`` for load balancers and monitoring.

``/healthz`` is alive whatever else is wrong; ``/readyz`` turns 503 when the
database's schema is not this resetd's or the outbox worker has stopped;
``/metrics`` counts what happened, in Prometheus' text format, and is served
only to local requests or to the holder of ``[metrics] token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from resetd import keys
from resetd.app import create_app
from resetd.config import ConfigError

from .helpers import GOOD_PASSWORD, ConfigFactory, add_user, request_reset
from .relays import Relay
from .signin_helpers import login_csrf, post_login
from .test_readyz import OUTSIDERS

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

TOKEN = "metrics-token-0123456789abcdef-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(
    client: TestClient[Any, Any],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    # The classic text format, which every Prometheus version reads.
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return samples(await resp.text())


def one(label: str, value: str) -> tuple[tuple[str, str], ...]:
    return ((label, value),)


def migrate_further(path: str) -> None:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as other:
        other.execute("PRAGMA user_version = 99")


@pytest.mark.sqlite_only  # migrated further through SQLite's file (PostgreSQL: test_pg_storage)
async def test_healthz_answers_while_readyz_reports_a_schema_it_does_not_know(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    cfg = make_config(dev_inbox={"enabled": False})
    client = await aiohttp_client(create_app(cfg))
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert {k: v for k, v in (await ready.json()).items() if k != "relay"} == {
        "status": "ok",
        "database": "ok",
        "migrations": "current",
        "outbox": "running",
    }
    # A newer resetd sharing the database has migrated it further (in a thread:
    # the app's transactions need this loop to reach their COMMIT).
    await asyncio.to_thread(migrate_further, cfg.database.path)
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["migrations"] == "mismatch"
    alive = await client.get("/healthz")
    assert alive.status == 200
    assert await alive.json() == {"status": "ok"}
    assert alive.headers["Cache-Control"] == "no-store"


async def test_readyz_is_503_once_the_outbox_worker_has_stopped(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    worker = client.app[keys.outbox_worker]
    dispatcher = worker._dispatcher
    assert dispatcher is not None
    dispatcher.cancel()  # as a bug that escaped its error handling would end it
    await asyncio.gather(dispatcher, return_exceptions=True)
    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert (body["status"], body["outbox"], body["database"]) == ("unavailable", "stopped", "ok")
    assert (await client.get("/healthz")).status == 200


async def test_metrics_count_requests_deliveries_and_sign_ins(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    before = await scrape(client)
    assert before[("resetd_reset_requests_total", one("outcome", "mail_queued"))] == 0
    assert before[("resetd_outbox_mails", one("status", "pending"))] == 0

    assert (await request_reset(client, "susan@example.com")).status == 303
    assert (await request_reset(client, "nobody@example.com")).status == 303
    await relay.wait_for(1)
    csrf = await login_csrf(client)
    assert (await post_login(client, csrf, "susan", "wrong password here")).status == 400
    assert (await post_login(client, csrf, "susan", GOOD_PASSWORD)).status == 303

    async def counted() -> dict[Any, float] | None:
        got = await scrape(client)
        return got if got[("resetd_outbox_delivery_seconds_count", ())] == 1 else None

    for _ in range(100):
        after = await counted()
        if after is not None:
            break
        await asyncio.sleep(0.05)
    assert after is not None
    assert after[("resetd_reset_requests_total", one("outcome", "mail_queued"))] == 1
    assert after[("resetd_reset_requests_total", one("outcome", "unknown_address"))] == 1
    assert after[("resetd_outbox_smtp_replies_total", one("class", "2xx"))] == 1
    assert after[("resetd_outbox_smtp_replies_total", one("class", "5xx"))] == 0
    assert after[("resetd_sign_ins_total", one("outcome", "failed"))] == 1
    assert after[("resetd_sign_ins_total", one("outcome", "success"))] == 1
    assert after[("resetd_hashing_queue_waiting", ())] == 0
    assert after[("resetd_outbox_oldest_pending_seconds", ())] == 0


async def test_metrics_show_the_backlog_refusals_and_rate_limits(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    relay = Relay(script=lambda n: "550 5.1.1 no such user")
    port = await relay.start()
    try:
        cfg = make_config(
            dev_inbox={"enabled": False},
            mail={"port": port},
            limits={"requests_per_ip": 2},
        )
        client = await aiohttp_client(create_app(cfg))
        await add_user(client.app)
        await add_user(client.app, "bob", "bob@example.com")
        assert (await request_reset(client, "susan@example.com")).status == 303
        await relay_attempted(relay, 1)
        # Nothing listens there now: bob's mail waits in the outbox.
        await relay.stop()
        assert (await request_reset(client, "bob@example.com")).status == 303
        assert (await request_reset(client, "bob@example.com")).status == 429

        async def pending() -> dict[Any, float] | None:
            got = await scrape(client)
            return got if got[("resetd_outbox_mails", one("status", "pending"))] == 1 else None

        for _ in range(100):
            got = await pending()
            if got is not None:
                break
            await asyncio.sleep(0.05)
        assert got is not None
        assert got[("resetd_outbox_mails", one("status", "failed"))] == 1
        assert got[("resetd_outbox_smtp_replies_total", one("class", "5xx"))] == 1
        assert got[("resetd_rate_limited_requests_total", one("limit", "reset_ip"))] == 1
        assert got[("resetd_outbox_oldest_pending_seconds", ())] > 0
    finally:
        await relay.stop()


async def relay_attempted(relay: Relay, n: int) -> None:
    for _ in range(200):
        if relay.attempts >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the relay saw no attempt")


@pytest.mark.parametrize("headers", OUTSIDERS, ids=lambda h: ",".join(h))
async def test_metrics_are_refused_to_anyone_not_local_without_a_token(
    aiohttp_client: Any, make_config: ConfigFactory, headers: dict[str, str]
) -> None:
    cfg = make_config(
        server={"public_url": "http://reset.example.com"}, dev_inbox={"enabled": False}
    )
    client = await aiohttp_client(create_app(cfg))
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 403
    assert "resetd_" not in await resp.text()
    resp = await client.get("/metrics", headers={**headers, "Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 403  # no token configured: none opens it


async def test_metrics_token_opens_metrics_to_its_holder_only(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    cfg = make_config(
        server={"public_url": "http://reset.example.com"},
        dev_inbox={"enabled": False},
        metrics={"token": TOKEN},
    )
    client = await aiohttp_client(create_app(cfg))
    outside = {"Host": "reset.example.com", "X-Forwarded-For": "203.0.113.9"}
    for auth in ("", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        resp = await client.get("/metrics", headers={**outside, "Authorization": auth})
        assert resp.status == 401, auth
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "resetd_" not in await resp.text()
    resp = await client.get("/metrics", headers={**outside, "Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    assert "resetd_reset_requests_total" in await resp.text()
    assert (await client.get("/metrics")).status == 200  # local: no token needed


def test_a_short_metrics_token_is_refused_without_printing_it(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError) as info:
        make_config(metrics={"token": "short-token"})
    assert str(info.value) == ("[metrics] token: use at least 32 random printable ASCII characters")
    with pytest.raises(ConfigError) as info:
        make_config(metrics={"token": 12345})
    assert "12345" not in str(info.value)


async def test_metrics_count_sign_ins_refused_by_a_limit(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(
        create_app(make_config(dev_inbox={"enabled": False}, limits={"failed_logins_per_ip": 3}))
    )
    await add_user(client.app)
    csrf = await login_csrf(client)
    statuses = [(await post_login(client, csrf, "susan")).status for _ in range(5)]
    assert statuses == [400] * 3 + [429] * 2
    got = await scrape(client)
    assert got[("resetd_sign_ins_total", one("outcome", "failed"))] == 3
    assert got[("resetd_sign_ins_total", one("outcome", "refused"))] == 2
    assert got[("resetd_rate_limited_requests_total", one("limit", "sign_in"))] == 2
    assert got[("resetd_rate_limited_requests_total", one("limit", "reset_ip"))] == 0
