"""A relay that refuses connections is backed off as a whole: fewer connections
and one shared, growing wait, so it sees a handful of attempts rather than one
per mail; the pool grows back once it accepts again. ``/readyz`` and
``resetd outbox`` say what is going on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from resetd import keys
from resetd.app import create_app
from resetd.db import Database
from resetd.outbox.worker import OutboxWorker
from resetd.reset.compose import ComposedMail
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import TEST_SECRET, ConfigFactory, eventually
from .processes import run_cli, write_config
from .raw_relay import RawRelay
from .relays import free_port
from .sqlite_rows import app_db, enqueue_mail

SENDER = "no-reply@example.test"
TOO_MANY = "421 4.7.0 relay.test Error: too many connections from 127.0.0.1"


def composed(to: str) -> ComposedMail:
    data = f"From: {SENDER}\r\nTo: {to}\r\nSubject: Hi\r\n\r\nhello {to}\r\n".encode()
    return ComposedMail(SENDER, to, "Hi", data)


async def enqueue(db: Database, recipients: list[str]) -> None:
    async with db.transaction() as conn:
        for to in recipients:
            await enqueue_mail(conn, "reset", composed(to))


async def test_a_relay_answering_421_to_every_connection_sees_a_handful_of_attempts(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = RawRelay(greeting=lambda n: TOO_MANY)
    port = await relay.start()
    try:
        cfg = make_config(
            dev_inbox={"enabled": False},
            mail={"port": port, "pool_size": 4, "retry_base": 1.0, "backoff_cap": 60},
        )
        client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
        recipients = [f"user{i}@example.com" for i in range(40)]
        await enqueue(app_db(client.app), recipients)
        client.app[keys.outbox_worker].wake()

        await asyncio.sleep(6.0)
        # Shared waits of 0.5-1, 1-2 and 2-4 s: four or five attempts, not one per
        # mail and retry (hundreds).
        assert 2 <= relay.connections <= 6
        assert relay.max_open == 1

        resp = await client.get("/readyz")
        assert resp.status == 200
        ready = await resp.json()
        assert ready["status"] == "degraded"
        assert ready["relay"]["state"] == "backing_off"
        assert ready["relay"]["error"] == TOO_MANY
        assert ready["relay"]["connections_allowed"] == 1

        config = write_config(
            tmp_path / "cli.toml",
            {"server": {"secret_key": TEST_SECRET}, "database": {"path": cfg.database.path}},
        )
        code, out, err = await run_cli("outbox", "--config", str(config))
        assert code == 0, err
        assert f"relay 127.0.0.1:{port}: backing_off since " in out
        assert out.splitlines()[1].endswith(f": {TOO_MANY}")

        relay.greeting = lambda n: "220 relay.test ESMTP"  # the relay has room again
        store = client.app[keys.outbox_store]

        async def all_sent() -> bool:
            return (await store.counts())["sent"] == 40

        await eventually(all_sent, timeout=15)
        assert sorted(r for d in relay.delivered for r in d.rcpt_tos) == sorted(recipients)
        assert relay.max_open > 1  # the pool grew back
        ready = await (await client.get("/readyz")).json()
        assert (ready["status"], ready["relay"]["state"]) == ("ok", "ok")
        code, out, err = await run_cli("outbox", "--config", str(config))
        assert code == 0, err
        assert "relay " not in out
    finally:
        await relay.stop()


async def test_a_relay_allowing_three_sessions_refuses_few_connections_and_gets_each_mail_once(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = RawRelay(max_sessions=3)
    port = await relay.start()
    db = await Database.open(str(tmp_path / "outbox.db"))
    store = SqliteOutbox(db)
    recipients = [f"user{i}@example.com" for i in range(200)]
    await enqueue(db, recipients)
    cfg = make_config(mail={"port": port, "pool_size": 8, "retry_base": 0.5, "backoff_cap": 5})
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
    await worker.start()
    try:

        async def settled() -> bool:
            return (await store.counts())["sent"] == 200

        await eventually(settled, timeout=30)
        assert [relay.count_for(to) for to in recipients] == [1] * 200
        assert relay.max_open <= 4  # the fourth is the one refused
        refused = relay.connections - relay.max_open
        assert refused <= 10, f"{relay.connections} connections for 3 sessions"
    finally:
        await worker.stop()
        await relay.stop()
        await db.close()


async def test_a_relay_that_is_not_listening_is_tried_a_handful_of_times(
    make_config: ConfigFactory, tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="resetd.outbox")
    port = free_port()  # connections are refused
    db = await Database.open(str(tmp_path / "outbox.db"))
    store = SqliteOutbox(db)
    await enqueue(db, [f"user{i}@example.com" for i in range(30)])
    cfg = make_config(mail={"port": port, "pool_size": 8, "retry_base": 0.5, "backoff_cap": 60})
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
    started = time.monotonic()
    await worker.start()
    try:
        await asyncio.sleep(3.0)
        refusals = [r for r in caplog.records if "relay refused a connection" in r.getMessage()]
        assert 2 <= len(refusals) <= 5  # waits of 0.25-0.5, 0.5-1, 1-2 s
        tried = [e for e in await store.list() if e.last_error is not None]
        assert 1 <= len(tried) <= len(refusals)  # one mail per attempt, the rest waited
        assert time.monotonic() - started < 10
    finally:
        await worker.stop()
        await db.close()


async def test_a_relay_that_refuses_a_connection_but_takes_the_mail_is_shown_well_again(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path, caplog: Any
) -> None:
    """A relay allowing two sessions refuses the pool's third connection, then
    takes all the mail over the two. It was shown ``backing_off`` for good,
    since only a new session it accepted made it ``ok`` again: a delivered mail
    does too."""
    relay = RawRelay(max_sessions=2)
    port = await relay.start()
    try:
        cfg = make_config(
            dev_inbox={"enabled": False},
            mail={"port": port, "pool_size": 8, "retry_base": 0.5, "backoff_cap": 5},
        )
        caplog.set_level(logging.INFO, logger="resetd.outbox")
        client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
        recipients = [f"user{i}@example.com" for i in range(30)]
        await enqueue(app_db(client.app), recipients)
        client.app[keys.outbox_worker].wake()
        store = client.app[keys.outbox_store]

        async def all_sent() -> bool:
            return (await store.counts())["sent"] == 30

        await eventually(all_sent, timeout=20)
        assert "relay refused a connection (421 4.7.0" in caplog.text  # the third one
        assert [relay.count_for(to) for to in recipients] == [1] * 30

        ready = await (await client.get("/readyz")).json()
        assert (ready["status"], ready["relay"]["state"]) == ("ok", "ok"), ready
        config = write_config(
            tmp_path / "cli.toml",
            {"server": {"secret_key": TEST_SECRET}, "database": {"path": cfg.database.path}},
        )
        code, out, err = await run_cli("outbox", "--config", str(config))
        assert code == 0, err
        assert "relay " not in out, out
    finally:
        await relay.stop()
