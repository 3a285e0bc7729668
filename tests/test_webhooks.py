"""Tell the app: events for ``[webhooks] url`` go through the outbox, signed, at
least once, to a real HTTP receiver on loopback, caused by the real reset flow."""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.outbox import OutboxEntry

from .helpers import ConfigFactory, add_user, eventually, request_reset, set_new_password, token_in
from .relays import Relay, free_port
from .webhook_receiver import WEBHOOK_SECRET, Receiver, signature_ok

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

# Quick retries, so a receiver that comes up is reached within a second.
FAST_RETRIES = {"retry_base": 0.1, "backoff_cap": 0.5}


@pytest.fixture
async def make_client(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> AsyncIterator[Any]:
    """``make_client(url, mail=None, **webhooks)``: the app with mail to ``relay``
    and webhooks to ``url``."""

    async def make(
        url: str, mail: dict[str, Any] | None = None, **webhooks: Any
    ) -> TestClient[Any, Any]:
        cfg = make_config(
            dev_inbox={"enabled": False},
            mail={"port": relay.port, **FAST_RETRIES, **(mail or {})},
            webhooks={"url": url, "secret": WEBHOOK_SECRET, **webhooks},
        )
        client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
        return client

    yield make


async def reset_password(client: TestClient[Any, Any], relay: Relay, email: str) -> None:
    """The real flow: ask for a link, take it from the mail, set a new password."""
    before = len(relay.received)
    assert (await request_reset(client, email)).status == 303
    mails = await relay.wait_for(before + 1)
    resp = await set_new_password(client, token_in(mails[before]))
    assert resp.status == 303, await resp.text()


async def webhook_rows(client: TestClient[Any, Any]) -> list[OutboxEntry]:
    entries = await client.app[keys.outbox_store].list(include_sent=True)
    return [e for e in entries if e.channel == "webhook"]


async def test_password_change_sends_one_signed_event_with_its_fields(
    make_client: Any, relay: Relay
) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        client = await make_client(receiver.url)
        user = await add_user(client.app)
        started = time.time()
        await reset_password(client, relay, "susan@example.com")

        [delivery] = await receiver.wait_for(1)
        assert delivery.headers["Content-Type"] == "application/json"
        assert signature_ok(WEBHOOK_SECRET, delivery.headers["Resetd-Signature"], delivery.body)
        event = delivery.event
        assert set(event) == {"type", "user_id", "email", "at", "id"}
        assert event["type"] == "password.changed"
        assert event["user_id"] == user.id
        assert event["email"] == "susan@example.com"
        assert event["id"].startswith("evt_") and len(event["id"]) > 20
        at = calendar.timegm(time.strptime(event["at"], "%Y-%m-%dT%H:%M:%SZ"))
        assert started - 2 <= at <= time.time() + 1

        [row] = await eventually(lambda: _rows_with_status(client, "sent"), timeout=5)
        assert row.kind == "password.changed"
        assert row.recipient == receiver.url
        assert row.attempts == 1
        await asyncio.sleep(0.7)  # longer than backoff_cap: a repeat would show
        assert len(receiver.received) == 1
        # The mail worker never takes the event for a mail: the relay got two.
        assert [m.rcpt_tos for m in relay.received] == [["susan@example.com"]] * 2
        # The reset request itself sends nothing unless [webhooks] events asks.
        assert [d.event["type"] for d in receiver.received] == ["password.changed"]
        audit = await client.app[keys.audit].recent(20)
        assert [(a.event, a.user_id) for a in audit if a.event.startswith("webhook")] == [
            ("webhook_sent", str(user.id))
        ]
    finally:
        await receiver.stop()


async def _rows_with_status(client: TestClient[Any, Any], status: str) -> list[OutboxEntry]:
    rows = await webhook_rows(client)
    return rows if rows and all(r.status == status for r in rows) else []


async def test_event_for_a_receiver_that_is_down_arrives_once_it_is_up(
    make_client: Any, relay: Relay
) -> None:
    port = free_port()  # nothing listens there yet
    receiver = Receiver()
    client = await make_client(f"http://127.0.0.1:{port}/hooks/resetd")
    await add_user(client.app)
    await reset_password(client, relay, "susan@example.com")

    async def refused_twice() -> list[OutboxEntry]:
        rows = await webhook_rows(client)
        return rows if rows and rows[0].attempts >= 2 else []

    [row] = await eventually(refused_twice)
    assert row.status == "pending"
    assert row.last_error is not None and "Cannot connect to host" in row.last_error

    await receiver.start(port)
    try:
        [delivery] = await receiver.wait_for(1)
        assert signature_ok(WEBHOOK_SECRET, delivery.headers["Resetd-Signature"], delivery.body)
        assert delivery.event["type"] == "password.changed"
        await eventually(lambda: _rows_with_status(client, "sent"))
        await asyncio.sleep(0.7)
        assert len(receiver.received) == 1
    finally:
        await receiver.stop()


async def test_receiver_answering_500_then_200_gets_the_same_event_again(
    make_client: Any, relay: Relay
) -> None:
    receiver = Receiver(answers=[500, 200])
    await receiver.start()
    try:
        client = await make_client(receiver.url)
        await add_user(client.app)
        await reset_password(client, relay, "susan@example.com")
        first, second = await receiver.wait_for(2)
        for delivery in (first, second):
            assert signature_ok(WEBHOOK_SECRET, delivery.headers["Resetd-Signature"], delivery.body)
        # The same event, id included: the app can drop a repeat by its id.
        assert first.body == second.body
        [row] = await eventually(lambda: _rows_with_status(client, "sent"))
        assert row.attempts == 2
        await asyncio.sleep(0.7)
        assert len(receiver.received) == 2
    finally:
        await receiver.stop()


async def test_a_4xx_answer_is_retried_too(make_client: Any, relay: Relay) -> None:
    receiver = Receiver(answers=[404, 401])
    await receiver.start()
    try:
        client = await make_client(receiver.url)
        await add_user(client.app)
        await reset_password(client, relay, "susan@example.com")
        await receiver.wait_for(3)
        [row] = await eventually(lambda: _rows_with_status(client, "sent"))
        assert row.attempts == 3
    finally:
        await receiver.stop()


async def test_an_event_the_app_keeps_refusing_fails_at_max_age_and_can_be_retried(
    make_client: Any, relay: Relay
) -> None:
    receiver = Receiver(answers=[500] * 1000)
    await receiver.start()
    try:
        client = await make_client(receiver.url, mail={"max_age": 1})
        user = await add_user(client.app)
        await reset_password(client, relay, "susan@example.com")
        [row] = await eventually(lambda: _rows_with_status(client, "failed"))
        assert row.last_error is not None
        assert row.last_error.startswith("gave up after ")
        assert row.last_error.endswith(": HTTP 500 Internal Server Error")
        audit = await client.app[keys.audit].recent(20)
        assert [(a.event, a.user_id) for a in audit if a.event.startswith("webhook")] == [
            ("webhook_failed", str(user.id))
        ]
        refused = len(receiver.received)
        assert refused >= 2

        # `resetd outbox retry` puts it back; the app now takes it.
        receiver.answers = []
        assert await client.app[keys.outbox_store].retry(row.id) == (1, 0)
        client.app[keys.wake_outbox]()
        await eventually(lambda: _rows_with_status(client, "sent"))
        assert len(receiver.received) == refused + 1
        assert len({d.body for d in receiver.received}) == 1  # one event, one id
    finally:
        await receiver.stop()


async def test_an_app_that_does_not_answer_in_time_gets_the_event_again(
    make_client: Any, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="resetd.outbox")
    receiver = Receiver()
    stalled = receiver.stall_first()
    await receiver.start()
    try:
        client = await make_client(receiver.url, timeout=0.5)
        await add_user(client.app)
        await reset_password(client, relay, "susan@example.com")
        first, second = await receiver.wait_for(2)
        assert first.body == second.body
        [row] = await eventually(lambda: _rows_with_status(client, "sent"))
        assert row.attempts == 2
        assert "result=retry" in caplog.text
        assert 'error="no answer within 0.5 s"' in caplog.text
    finally:
        stalled.set()
        await receiver.stop()


async def test_a_redirect_is_not_followed_and_the_event_stays_queued(
    make_client: Any, relay: Relay
) -> None:
    receiver = Receiver(answers=[302, 307, 308] * 10)
    await receiver.start()
    try:
        client = await make_client(receiver.url)
        await add_user(client.app)
        await reset_password(client, relay, "susan@example.com")
        await receiver.wait_for(2)

        async def redirected() -> list[OutboxEntry]:
            rows = await webhook_rows(client)
            return rows if rows and rows[0].last_error else []

        [row] = await eventually(redirected)
        assert row.status == "pending"
        assert row.last_error is not None and "redirects are not followed" in row.last_error
        assert {d.path for d in receiver.received} == {"/hooks/resetd"}
    finally:
        await receiver.stop()


async def test_reset_requested_events_only_when_asked_and_only_for_known_accounts(
    make_client: Any, relay: Relay
) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        client = await make_client(receiver.url, events=["password.changed", "reset.requested"])
        user = await add_user(client.app)
        assert (await request_reset(client, "nobody@example.com")).status == 303
        await reset_password(client, relay, "susan@example.com")
        await receiver.wait_for(2)
        await asyncio.sleep(0.7)
        events = [d.event for d in receiver.received]
        assert [e["type"] for e in events] == ["reset.requested", "password.changed"]
        assert {e["user_id"] for e in events} == {user.id}
        assert {e["email"] for e in events} == {"susan@example.com"}
        assert len({e["id"] for e in events}) == 2
    finally:
        await receiver.stop()


async def test_without_webhooks_nothing_is_queued_for_them(
    rclient: TestClient[Any, Any], relay: Relay
) -> None:
    await add_user(rclient.app)
    await reset_password(rclient, relay, "susan@example.com")
    entries = await rclient.app[keys.outbox_store].list(include_sent=True)
    assert [e.channel for e in entries] == ["mail", "mail"]
    assert keys.webhook_worker not in rclient.app
