"""``resetd serve`` as a real process: kill -9 and SIGTERM never lose mail.

The relay lives in the test's event loop; the server is a subprocess started
with a config file. Mail that was pending when the process died is delivered
by the next start, exactly once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from resetd.config import PasswordConfig
from resetd.config_load import load_config
from resetd.passwords import Hasher
from resetd.storage.open import open_storage

from .helpers import GOOD_PASSWORD, TEST_SECRET, eventually, token_in
from .processes import (
    DbTarget,
    Server,
    db_target,
    outbox_rows,
    relay_config,
    request_reset_over_http,
)
from .relays import ACCEPT, SLOW, Relay, free_port

EMAILS = ["susan@example.com", "bob@example.com"]


async def add_users(db_path: Path | str, emails: list[str]) -> None:
    """Accounts for ``emails`` in the SQLite file ``db_path``, or in the
    PostgreSQL database at that url, through resetd's own storage."""
    section = {"url": db_path} if isinstance(db_path, str) else {"path": str(db_path)}
    database = load_config(
        None, env={}, overrides={"server": {"secret_key": TEST_SECRET}, "database": section}
    ).database
    storage = await open_storage(database)
    try:
        cheap = PasswordConfig(argon2_memory_cost=8192, argon2_time_cost=1)
        password_hash = await Hasher(cheap).hash(GOOD_PASSWORD)
        for email in emails:
            await storage.users.add(email, email.split("@")[0], password_hash)
    finally:
        await storage.close()


pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL


@pytest.fixture
async def setup(
    tmp_path: Path, database_section: dict[str, Any]
) -> AsyncIterator[tuple[Server, DbTarget, int]]:
    """A server (not started) whose [mail] port has nothing listening yet, its
    database on the test's engine."""
    db_path = db_target(database_section)
    port = free_port()
    config = relay_config(tmp_path, port, database=database_section)
    await add_users(db_path, EMAILS)
    server = Server(config, tmp_path)
    try:
        yield server, db_path, port
    finally:
        await server.kill()


async def rows_where(db_path: DbTarget, check: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    async def look() -> list[dict[str, Any]] | None:
        rows = outbox_rows(db_path)
        return rows if check(rows) else None

    result: list[dict[str, Any]] = await eventually(look, timeout)
    return result


def assert_delivered_once_each(relay: Relay) -> None:
    assert sorted(r for m in relay.received for r in m.rcpt_tos) == sorted(EMAILS)


async def test_kill_9_with_mail_pending_delivers_it_after_restart(
    setup: tuple[Server, DbTarget, int],
) -> None:
    server, db_path, port = setup
    await server.start()
    for email in EMAILS:
        assert await request_reset_over_http(server.base_url, email) == 303
    await rows_where(db_path, lambda rows: len(rows) == 2 and all(r["attempts"] for r in rows))
    assert await server.kill() == -signal.SIGKILL

    relay = Relay()
    await relay.start(port)
    try:
        banner = await server.start()
        assert "Outbox            2 pending, 0 failed, 0 sent" in banner
        await relay.wait_for(2)
        await rows_where(db_path, lambda rows: [r["status"] for r in rows] == ["sent", "sent"])
        await asyncio.sleep(1.2)  # longer than backoff_cap: a duplicate would show
        assert_delivered_once_each(relay)
        assert await server.terminate() == 0

        logs = server.logs()
        assert "result=retry" in logs
        assert "result=sent" in logs
        assert "reset_password/" not in logs
        for mail in relay.received:
            assert token_in(mail) not in logs
    finally:
        await relay.stop()


async def test_kill_9_in_the_middle_of_a_send_resends_after_restart(
    setup: tuple[Server, DbTarget, int],
) -> None:
    server, db_path, port = setup
    relay = Relay(script=lambda n: SLOW if n == 1 else ACCEPT, stall_seconds=30)
    await relay.start(port)
    try:
        await server.start()
        await request_reset_over_http(server.base_url, EMAILS[0])

        async def in_data() -> bool:
            return relay.attempts == 1

        await eventually(in_data)
        await server.kill()  # the relay has the message but never said 250
        [row] = outbox_rows(db_path)
        assert row["status"] == "pending"
        assert row["claimed_until"] is not None

        await server.start()
        [mail] = await relay.wait_for(1)
        assert mail.rcpt_tos == [EMAILS[0]]
        await rows_where(db_path, lambda rows: rows[0]["status"] == "sent")
        await asyncio.sleep(1.2)
        assert len(relay.received) == 1
        assert relay.attempts == 2
        assert "1 mail(s) were mid-send when the last run ended" in server.logs()
    finally:
        await relay.stop()


async def test_sigterm_exits_0_and_pending_mail_goes_out_on_the_next_start(
    setup: tuple[Server, DbTarget, int],
) -> None:
    server, db_path, port = setup
    relay = Relay(script=lambda n: "451 4.7.1 Greylisted, try later")
    await relay.start(port)
    try:
        await server.start()
        for email in EMAILS:
            await request_reset_over_http(server.base_url, email)
        # Both tried and refused (an attempt counts from its claim, before the reply).
        await rows_where(
            db_path, lambda rows: len(rows) == 2 and all(r["last_error"] for r in rows)
        )
        assert await server.terminate() == 0
        assert "2 mail(s) pending for the next start" in server.logs()
        rows = outbox_rows(db_path)
        assert [r["status"] for r in rows] == ["pending", "pending"]
        assert all(r["claimed_until"] is None for r in rows)  # nothing left claimed
        assert all(r["last_error"] == "451 4.7.1 Greylisted, try later" for r in rows)

        relay.script = lambda n: ACCEPT
        banner = await server.start()
        assert "Outbox            2 pending, 0 failed, 0 sent" in banner
        await relay.wait_for(2)
        await rows_where(db_path, lambda rows: [r["status"] for r in rows] == ["sent", "sent"])
        await asyncio.sleep(1.2)
        assert_delivered_once_each(relay)
        assert await server.terminate() == 0
    finally:
        await relay.stop()


async def test_sigterm_lets_a_send_in_progress_finish(
    setup: tuple[Server, DbTarget, int],
) -> None:
    server, db_path, port = setup
    relay = Relay(script=lambda n: SLOW, stall_seconds=1.0)  # well within the 3 s grace
    await relay.start(port)
    try:
        await server.start()
        await request_reset_over_http(server.base_url, EMAILS[0])

        async def in_data() -> bool:
            return relay.attempts == 1

        await eventually(in_data)
        assert await server.terminate() == 0
        assert len(relay.received) == 1
        [row] = outbox_rows(db_path)
        assert row["status"] == "sent"

        banner = await server.start()  # sent means sent: nothing goes out again
        assert "Outbox            0 pending, 0 failed, 1 sent" in banner
        await asyncio.sleep(1.0)
        assert relay.attempts == 1
        assert await server.terminate() == 0
    finally:
        await relay.stop()
