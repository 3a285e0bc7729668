"""A reset mail expires with its link: once the token inside is dead, the mail is
failed with a clear reason instead of being sent or retried until ``max_age``.
Other mail (the password-changed notice) has no link to expire and keeps
``max_age``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from resetd.app import create_app
from resetd.config import Config
from resetd.db import Database
from resetd.outbox.worker import OutboxWorker
from resetd.reset.compose import ComposedMail
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import TEST_SECRET, ConfigFactory, add_user, eventually, request_reset, token_in
from .processes import run_cli, write_config
from .relays import Relay
from .sqlite_rows import app_db, enqueue_mail

FAST = {"retry_base": 0.1, "backoff_cap": 0.3, "timeout": 2.0, "max_age": 3600}


def composed(to: str) -> ComposedMail:
    data = f"From: no-reply@example.test\r\nTo: {to}\r\nSubject: Hi\r\n\r\nhello\r\n"
    return ComposedMail("no-reply@example.test", to, "Hi", data.encode())


async def row(db: Database, mail_id: int) -> dict[str, Any]:
    found = await db.fetchone("SELECT * FROM outbox WHERE id = ?", (mail_id,))
    assert found is not None
    return dict(found)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "outbox.db"))
    yield database
    await database.close()


async def queue(db: Database, kind: str, to: str, expires_at: float | None) -> int:
    async with db.transaction() as conn:
        return await enqueue_mail(conn, kind, composed(to), expires_at=expires_at)


async def test_reset_mail_records_when_its_token_expires(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False}, mail={"port": relay.port}, reset={"token_ttl": 900}
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    await request_reset(client, "susan@example.com")
    [mail] = await relay.wait_for(1)
    claims = jwt.decode(token_in(mail), options={"verify_signature": False})
    db = app_db(client.app)
    [found] = await db.fetchall("SELECT created_at, expires_at FROM outbox")
    assert found["expires_at"] == claims["exp"]
    # The row is written just after the token is minted: on a loaded machine,
    # seconds after; never before.
    assert 880 <= found["expires_at"] - found["created_at"] <= 901


async def test_reset_mail_still_refused_when_its_link_dies_is_failed_not_retried(
    make_config: ConfigFactory, db: Database
) -> None:
    relay = Relay(envelope=lambda cmd, addr: "451 4.7.1 Greylisted" if cmd == "RCPT" else None)
    port = await relay.start()
    cfg: Config = make_config(mail={"port": port, **FAST})
    store = SqliteOutbox(db)
    reset_id = await queue(db, "reset", "susan@example.com", time.time() + 1.0)
    notice_id = await queue(db, "password_changed", "bob@example.com", None)
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
    await worker.start()
    try:

        async def reset_failed() -> dict[str, Any] | None:
            found = await row(db, reset_id)
            return found if found["status"] == "failed" else None

        failed = await eventually(reset_failed, timeout=5)
        assert failed["last_error"] == (
            "link expired before delivery (last error: 451 4.7.1 Greylisted)"
        )
        assert failed["attempts"] >= 2
        assert time.time() >= failed["expires_at"]
        await asyncio.sleep(0.8)  # several retry periods: no more attempts
        assert (await row(db, reset_id))["attempts"] == failed["attempts"]
        notice = await row(db, notice_id)
        assert notice["status"] == "pending"  # max_age still applies to it
        assert notice["attempts"] > failed["attempts"]
    finally:
        await worker.stop()
        await relay.stop()


async def test_reset_mail_whose_link_died_in_the_queue_is_never_sent(
    make_config: ConfigFactory, db: Database, relay: Relay
) -> None:
    cfg: Config = make_config(mail={"port": relay.port, **FAST})
    store = SqliteOutbox(db)
    dead = await queue(db, "reset", "susan@example.com", time.time() - 1)
    alive = await queue(db, "reset", "bob@example.com", time.time() + 600)
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", relay.port))
    await worker.start()
    try:
        await relay.wait_for(1)

        async def settled() -> bool:
            return (await store.counts())["pending"] == 0

        await eventually(settled)
        gone = await row(db, dead)
        assert gone["status"] == "failed"
        assert gone["last_error"] == "link expired before delivery"
        assert (await row(db, alive))["status"] == "sent"
        assert [m.rcpt_tos for m in relay.received] == [["bob@example.com"]]
    finally:
        await worker.stop()


async def test_cli_retry_leaves_a_reset_mail_with_a_dead_link_failed_and_says_why(
    make_config: ConfigFactory, db: Database, tmp_path: Path
) -> None:
    relay = Relay(envelope=lambda cmd, addr: "550 5.1.1 No such user" if cmd == "RCPT" else None)
    port = await relay.start()
    cfg: Config = make_config(mail={"port": port, **FAST})
    store = SqliteOutbox(db)
    dead = await queue(db, "reset", "susan@example.com", time.time() - 1)
    notice = await queue(db, "password_changed", "bob@example.com", None)
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
    await worker.start()
    try:

        async def both_failed() -> bool:
            return (await store.counts())["failed"] == 2

        await eventually(both_failed)
    finally:
        await worker.stop()
        await relay.stop()
    config = write_config(
        tmp_path / "cli.toml",
        {"server": {"secret_key": TEST_SECRET}, "database": {"path": db.path}},
    )

    code, _, err = await run_cli("outbox", "retry", str(dead), "--config", str(config))
    assert code == 1
    assert "1 reset mail(s) left failed: their links have expired" in err
    assert (await row(db, dead))["status"] == "failed"

    code, out, err = await run_cli("outbox", "retry", "--all-failed", "--config", str(config))
    assert code == 0, err
    assert "1 mail(s) queued again" in out
    assert "1 reset mail(s) left failed" in out
    assert (await row(db, dead))["status"] == "failed"
    assert (await row(db, notice))["status"] == "pending"
