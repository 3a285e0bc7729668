"""The outbox against a real relay on real sockets: retries, permanent failures,
the connection pool, and the ``resetd outbox`` commands.

Every test uses a fast retry schedule (``retry_base`` 0.1 s) so that a retry
storm, if there were one, would show within a second.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.config import Config
from resetd.db import Database
from resetd.outbox.attempts import backoff, redact
from resetd.outbox.worker import OutboxWorker
from resetd.storage.outbox import OutboxEntry, OutboxStore
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import TEST_SECRET, ConfigFactory, add_user, eventually, request_reset, token_in
from .processes import run_cli, write_config
from .relays import ACCEPT, DROP, SLOW, STALL, Relay, first_n, free_port

FAST = {"retry_base": 0.1, "backoff_cap": 0.5, "timeout": 2.0}


async def start_app(
    aiohttp_client: Any, make_config: ConfigFactory, port: int, **mail: Any
) -> TestClient[Any, Any]:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": port, **FAST, **mail})
    client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
    return client


async def entries(client: TestClient[Any, Any]) -> list[OutboxEntry]:
    store: OutboxStore = client.app[keys.outbox_store]
    return await store.list(include_sent=True)


async def entry_when(
    client: TestClient[Any, Any], status: str, timeout: float = 10.0
) -> OutboxEntry:
    async def check() -> OutboxEntry | None:
        found = [e for e in await entries(client) if e.status == status]
        return found[0] if found else None

    result: OutboxEntry = await eventually(check, timeout)
    return result


async def cli_config(tmp_path: Path, client: TestClient[Any, Any]) -> str:
    """A config file for the CLI, pointing at the running app's database."""
    db_path = client.app[keys.config].database.path
    path = write_config(
        tmp_path / "cli.toml",
        {"server": {"secret_key": TEST_SECRET}, "database": {"path": db_path}},
    )
    return str(path)


def test_backoff_starts_within_seconds_and_is_capped() -> None:
    first = [backoff(1, 2.0, 300.0) for _ in range(100)]
    assert all(1.0 <= d <= 2.0 for d in first)
    assert len(set(first)) > 1  # jittered
    assert all(150.0 <= backoff(n, 2.0, 300.0) <= 300.0 for n in (9, 20, 10_000))


def test_redact_removes_links_and_tokens() -> None:
    text = "552 rejected http://x.test/reset_password/eyJhbGc.eyJzdWIi.c2ln, see eyJa.eyJb.c"
    assert redact(text) == "552 rejected http://x.test/reset_password/<redacted>, see <redacted>"


async def test_relay_absent_at_request_time_gets_the_mail_once_it_starts(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    port = free_port()  # nothing listens here yet
    client = await start_app(aiohttp_client, make_config, port)
    await add_user(client.app)
    assert (await request_reset(client, "susan@example.com")).status == 303

    async def refused_twice() -> bool:
        return any(e.attempts >= 2 and e.last_error for e in await entries(client))

    await eventually(refused_twice)
    relay = Relay()
    await relay.start(port)
    try:
        await relay.wait_for(1)
        sent = await entry_when(client, "sent")
        await asyncio.sleep(0.6)  # longer than backoff_cap: any duplicate would show
        assert len(relay.received) == 1
        assert relay.received[0].rcpt_tos == ["susan@example.com"]
        assert sent.last_error is None
    finally:
        await relay.stop()


async def test_4xx_replies_are_retried_and_delivered_exactly_once(
    aiohttp_client: Any, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="resetd.outbox")
    relay = Relay(script=first_n(3, "451 4.3.0 Try again later"))
    port = await relay.start()
    try:
        client = await start_app(aiohttp_client, make_config, port)
        await add_user(client.app)
        await request_reset(client, "susan@example.com")
        [mail] = await relay.wait_for(1)
        sent = await entry_when(client, "sent")
        await asyncio.sleep(0.6)
        assert len(relay.received) == 1
        assert relay.attempts == 4
        assert sent.attempts == 4

        lines = [r.getMessage() for r in caplog.records if r.name == "resetd.outbox"]
        attempts = [line for line in lines if " attempt=" in line]
        assert len(attempts) == 4  # one line per attempt
        assert "result=retry" in attempts[0]
        assert 'error="451 4.3.0 Try again later"' in attempts[0]
        assert "domain=example.com" in attempts[0]
        assert "result=sent" in attempts[-1]
        ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("resetd"))
        assert token_in(mail) not in ours
        assert "reset_password/" not in ours
        assert "susan@" not in ours
    finally:
        await relay.stop()


async def test_5xx_reply_is_a_permanent_failure_listed_by_the_cli(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = Relay(script=lambda n: "550 5.1.1 No such user here")
    port = await relay.start()
    try:
        client = await start_app(aiohttp_client, make_config, port)
        await add_user(client.app)
        await request_reset(client, "susan@example.com")
        failed = await entry_when(client, "failed")
        assert failed.last_error == "550 5.1.1 No such user here"
        await asyncio.sleep(1.5)  # 15 retry periods: no retry storm
        [still] = await entries(client)
        assert still.status == "failed"
        assert still.attempts == 1
        assert relay.attempts == 1
        assert relay.received == []

        code, out, err = await run_cli("outbox", "--config", await cli_config(tmp_path, client))
        assert code == 0, err
        assert "0 pending, 1 failed, 0 sent" in out
        [row] = [line for line in out.splitlines() if " failed " in line]
        assert "attempts=1" in row
        assert "to=susan@example.com" in row
        assert "last error: 550 5.1.1 No such user here" in out
    finally:
        await relay.stop()


async def test_connection_dropped_mid_data_is_retried_and_delivered_once(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    relay = Relay(script=first_n(1, DROP))
    port = await relay.start()
    try:
        client = await start_app(aiohttp_client, make_config, port)
        await add_user(client.app)
        await request_reset(client, "susan@example.com")
        await relay.wait_for(1)
        sent = await entry_when(client, "sent")
        await asyncio.sleep(0.6)
        assert len(relay.received) == 1
        assert relay.attempts == 2
        assert relay.connections == 2  # the dropped connection was replaced
        assert sent.attempts == 2
    finally:
        await relay.stop()


async def test_stalled_relay_times_out_is_retried_and_never_holds_a_response(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    relay = Relay(script=first_n(1, STALL), stall_seconds=30)
    port = await relay.start()
    try:
        client = await start_app(aiohttp_client, make_config, port, timeout=2.0, data_timeout=2.0)
        await add_user(client.app)
        await add_user(client.app, "bob", "bob@example.com")
        await request_reset(client, "susan@example.com")

        async def stalled() -> bool:
            return relay.attempts == 1

        await eventually(stalled)
        started = time.monotonic()
        resp = await request_reset(client, "bob@example.com")  # while the relay stalls
        assert resp.status == 303
        assert time.monotonic() - started < 1.0  # the relay holds the DATA for 2 s

        await relay.wait_for(2)
        await asyncio.sleep(0.6)
        assert relay.count_for("susan@example.com") == 1
        assert relay.count_for("bob@example.com") == 1
        stalled_entry = next(e for e in await entries(client) if e.recipient.startswith("susan"))
        assert stalled_entry.status == "sent"
        assert stalled_entry.attempts == 2
    finally:
        await relay.stop()


async def test_mail_is_marked_failed_after_max_age(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_app(aiohttp_client, make_config, free_port(), max_age=1)
    await add_user(client.app)
    await request_reset(client, "susan@example.com")
    failed = await entry_when(client, "failed", timeout=5)
    assert failed.last_error is not None
    assert failed.last_error.startswith(f"gave up after {failed.attempts} attempts: ")
    assert failed.attempts >= 2


async def test_burst_of_requests_is_delivered_once_each_over_a_few_connections(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    relay = Relay()
    port = await relay.start()
    try:
        cfg = make_config(
            dev_inbox={"enabled": False},
            mail={"port": port, "pool_size": 4, **FAST},
            limits={"requests_per_ip": 10_000},
        )
        client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
        users = client.app[keys.users]
        password_hash = await client.app[keys.hasher].hash("correct horse battery staple")
        emails = [f"user{i}@example.com" for i in range(300)]
        for i, email in enumerate(emails):
            await users.add(email, f"user{i}", password_hash)

        gate = asyncio.Semaphore(50)

        async def one(email: str) -> int:
            async with gate:
                return (await request_reset(client, email)).status

        statuses = await asyncio.gather(*(one(e) for e in emails))
        assert set(statuses) == {303}
        await relay.wait_for(300, timeout=40)
        await asyncio.sleep(0.3)
        assert sorted(r for m in relay.received for r in m.rcpt_tos) == sorted(emails)
        assert relay.max_open <= 4
        assert relay.connections <= 4
        counts = await client.app[keys.outbox_store].counts()
        assert counts == {"pending": 0, "failed": 0, "sent": 300}
    finally:
        await relay.stop()


async def test_cli_retry_puts_failed_mail_back_and_it_is_delivered(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = Relay(script=first_n(2, "550 5.7.1 Relaying denied"))
    port = await relay.start()
    try:
        client = await start_app(aiohttp_client, make_config, port)
        await add_user(client.app)
        await add_user(client.app, "bob", "bob@example.com")
        await request_reset(client, "susan@example.com")
        await request_reset(client, "bob@example.com")

        async def both_failed() -> list[OutboxEntry] | None:
            found = await entries(client)
            return found if [e.status for e in found] == ["failed", "failed"] else None

        susan, bob = await eventually(both_failed)
        config = await cli_config(tmp_path, client)

        code, out, err = await run_cli("outbox", "retry", str(susan.id), "--config", config)
        assert code == 0, err
        assert "1 mail(s) queued again" in out
        await relay.wait_for(1)
        assert relay.received[0].rcpt_tos == ["susan@example.com"]
        still_failed = await client.app[keys.outbox_store].get(bob.id)
        assert still_failed is not None and still_failed.status == "failed"

        code, _, err = await run_cli("outbox", "retry", str(susan.id), "--config", config)
        assert code == 1
        assert f"mail {susan.id} is sent" in err

        code, out, err = await run_cli("outbox", "retry", "--all-failed", "--config", config)
        assert code == 0, err
        await relay.wait_for(2)
        await asyncio.sleep(0.6)
        assert relay.count_for("susan@example.com") == 1
        assert relay.count_for("bob@example.com") == 1
        assert [e.status for e in await entries(client)] == ["sent", "sent"]

        code, _, err = await run_cli("outbox", "retry", "--all-failed", "--config", config)
        assert code == 1
        assert "no failed mail" in err
        code, _, err = await run_cli("outbox", "retry", "--config", config)
        assert code == 2
    finally:
        await relay.stop()


async def enqueue(db: Database, recipients: list[str]) -> list[int]:
    """Queue a small mail per recipient, as the request processor's transaction would."""
    ids = []
    for to in recipients:
        data = f"From: no-reply@example.test\r\nTo: {to}\r\nSubject: Hi\r\n\r\nhello\r\n"
        async with db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO outbox (kind, sender, recipient, subject, message, created_at,"
                " next_attempt_at) VALUES ('reset', 'no-reply@example.test', ?, 'Hi', ?, ?, ?)",
                (to, data.encode(), time.time(), time.time()),
            )
            assert cur.lastrowid is not None
            ids.append(cur.lastrowid)
    return ids


def worker_for(store: OutboxStore, cfg: Config, port: int, grace: float) -> OutboxWorker:
    return OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port), grace=grace)


async def warm_up(db: Database, store: OutboxStore, worker: OutboxWorker) -> None:
    """One mail through the worker, so its connection is open and knows whether
    the relay pipelines."""
    await enqueue(db, ["warm@example.com"])
    worker.wake()

    async def sent() -> bool:
        return (await store.counts())["sent"] == 1

    await eventually(sent)


@dataclass
class MidSend:
    """A worker with one warm connection whose second mail (a@) is in its data
    on the relay, with the rest of ``recipients`` queued behind it."""

    db: Database
    store: OutboxStore
    worker: OutboxWorker
    ids: list[int]


@asynccontextmanager
async def mid_send(
    make_config: ConfigFactory,
    tmp_path: Path,
    relay: Relay,
    recipients: list[str],
    grace: float,
    **mail: Any,
) -> AsyncIterator[MidSend]:
    port = await relay.start()
    db = await Database.open(str(tmp_path / "outbox.db"))
    try:
        cfg = make_config(mail={"port": port, "pool_size": 1, **FAST, **mail})
        store = SqliteOutbox(db)
        worker = worker_for(store, cfg, port, grace=grace)
        await worker.start()
        await warm_up(db, store, worker)
        ids = await enqueue(db, recipients)
        worker.wake()

        async def in_data() -> bool:
            return relay.attempts == 2

        await eventually(in_data)
        yield MidSend(db, store, worker, ids)
    finally:
        await relay.stop()
        await db.close()


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-at-a-time", "pipelining"])
async def test_stop_lets_the_send_in_progress_finish_and_leaves_the_queue_pending(
    make_config: ConfigFactory, tmp_path: Path, pipelining: bool
) -> None:
    # With pipelining the sender has taken b to go next, its envelope written
    # behind a's data: b must stay pending too.
    relay = Relay(
        pipelining=pipelining, script=lambda n: ACCEPT if n == 1 else SLOW, stall_seconds=0.5
    )
    recipients = ["a@example.com", "b@example.com", "c@example.com"]
    async with mid_send(make_config, tmp_path, relay, recipients, grace=5.0) as m:
        first, *rest = m.ids
        await m.worker.stop()
        assert [r.rcpt_tos for r in relay.received] == [["warm@example.com"], ["a@example.com"]]
        assert relay.connections == 1
        done = await m.store.get(first)
        assert done is not None and done.status == "sent"
        for mail_id in rest:
            left = await m.store.get(mail_id)
            assert left is not None
            assert (left.status, left.attempts) == ("pending", 0)  # claimed, never tried


async def test_a_stop_that_interrupts_a_send_sends_nothing_after_it(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = Relay(pipelining=True, script=lambda n: STALL if n == 2 else ACCEPT, stall_seconds=30)
    recipients = ["a@example.com", "b@example.com"]
    async with mid_send(make_config, tmp_path, relay, recipients, grace=0.3, timeout=10.0) as m:
        stalled, taken = m.ids
        await m.worker.stop()
        # b was taken to go next; the stop leaves it pending instead of opening a
        # new session for it after cutting a's.
        assert relay.connections == 1
        assert [r.rcpt_tos for r in relay.received] == [["warm@example.com"]]
        for mail_id in (stalled, taken):
            left = await m.store.get(mail_id)
            assert left is not None and left.status == "pending"
        b = await m.store.get(taken)
        assert b is not None and b.attempts == 0


async def test_a_stop_sends_nothing_claimed_or_queued_while_the_database_was_busy(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    # Another writer (a second instance, `resetd outbox retry`) holds SQLite's
    # lock while the dispatcher claims: the stop begins mid-claim.
    relay = Relay(script=lambda n: SLOW if n == 2 else ACCEPT, stall_seconds=0.4)
    recipients = ["a@example.com", "b@example.com"]
    async with mid_send(make_config, tmp_path, relay, recipients, grace=5.0) as m:
        in_progress, queued = m.ids
        [due] = await enqueue(m.db, ["c@example.com"])
        other = sqlite3.connect(str(tmp_path / "outbox.db"), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            m.worker.wake()  # the dispatcher's claim now waits for the lock
            await asyncio.sleep(0.05)
            stopping = asyncio.create_task(m.worker.stop())
            await asyncio.sleep(0.6)  # a's data ends meanwhile; b is in the queue
            other.execute("COMMIT")
            await stopping
        finally:
            other.close()
        assert [r.rcpt_tos for r in relay.received] == [["warm@example.com"], ["a@example.com"]]
        for mail_id in (queued, due):
            left = await m.store.get(mail_id)
            assert left is not None and left.status == "pending"
        sent = await m.store.get(in_progress)
        assert sent is not None and sent.status == "sent"


async def test_a_stop_completes_when_the_database_is_locked(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    # Giving the queued mail back fails after SQLite's 5 s busy timeout; the stop
    # still ends every sender, marks what the relay accepted and closes the session.
    relay = Relay(script=lambda n: SLOW if n == 2 else ACCEPT, stall_seconds=0.3)
    recipients = ["a@example.com", "b@example.com"]
    async with mid_send(make_config, tmp_path, relay, recipients, grace=8.0) as m:
        in_progress, _queued = m.ids
        other = sqlite3.connect(str(tmp_path / "outbox.db"), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            asyncio.get_running_loop().call_later(5.5, other.execute, "COMMIT")
            await m.worker.stop()
        finally:
            other.close()
        assert relay.open_connections == 0
        assert [r.rcpt_tos for r in relay.received] == [["warm@example.com"], ["a@example.com"]]
        sent = await m.store.get(in_progress)
        assert sent is not None and sent.status == "sent"  # never sent twice


async def test_stop_interrupts_a_send_that_outlives_the_grace_period(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = Relay(script=lambda n: STALL if n == 1 else ACCEPT, stall_seconds=30)
    port = await relay.start()
    db = await Database.open(str(tmp_path / "outbox.db"))
    try:
        cfg = make_config(mail={"port": port, "timeout": 10.0})
        store = SqliteOutbox(db)
        [mail_id] = await enqueue(db, ["a@example.com"])
        worker = worker_for(store, cfg, port, grace=0.3)
        await worker.start()

        async def in_data() -> bool:
            return relay.attempts == 1

        await eventually(in_data)
        started = time.monotonic()
        await worker.stop()
        assert time.monotonic() - started < 2.0  # not the 10 s SMTP timeout
        left = await store.get(mail_id)
        assert left is not None
        assert left.status == "pending"
        assert left.last_error is not None
        assert left.last_error.startswith("interrupted by shutdown")
        assert left.next_attempt_at <= time.time()

        again = worker_for(store, cfg, port, grace=0.3)
        await again.start()
        try:
            await relay.wait_for(1)
        finally:
            await again.stop()
        sent = await store.get(mail_id)
        assert sent is not None and sent.status == "sent"
        assert len(relay.received) == 1
    finally:
        await relay.stop()
        await db.close()


async def test_wrong_relay_password_keeps_mail_queued_loudly_until_fixed(
    aiohttp_client: Any, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="resetd.outbox")
    relay = Relay(refuse_auth=True)
    port = await relay.start()
    try:
        client = await start_app(
            aiohttp_client, make_config, port, username="app", password="wrong-password"
        )
        await add_user(client.app)
        await request_reset(client, "susan@example.com")

        async def refused_twice() -> OutboxEntry | None:
            found = await entries(client)
            return found[0] if found and found[0].attempts >= 2 else None

        entry = await eventually(refused_twice)
        assert entry.status == "pending"  # a refused session says nothing about the mail
        assert entry.last_error is not None and entry.last_error.startswith("535")
        refusals = [r for r in caplog.records if "result=retry" in r.getMessage()]
        assert refusals and all(r.levelno == logging.ERROR for r in refusals)
        assert "wrong-password" not in caplog.text

        relay.refuse_auth = False  # the operator fixes the relay's side
        [mail] = await relay.wait_for(1)
        assert mail.rcpt_tos == ["susan@example.com"]

        async def sent() -> bool:
            return [e.status for e in await entries(client)] == ["sent"]

        assert await eventually(sent)
    finally:
        await relay.stop()
