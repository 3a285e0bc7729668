"""The PostgreSQL engine on a real server: transactions, retries, the database's
clock, the pool's size, schemas apart, LISTEN/NOTIFY across instances and
through a lost connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from resetd.storage.postgres.engine import PostgresEngine, Transaction, notify
from resetd.storage.postgres.migrations import schema_is_current
from resetd.storage.postgres.startup import from_config, open_migrated

from .pg import admin

# Every wait below is bounded: a listener that never hears fails the test.
WAIT = 15.0


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[PostgresEngine]:
    e = await PostgresEngine.open(pg_url, pool_size=3)
    yield e
    await e.close()


async def _user_count(tx: Transaction) -> int:
    row = await tx.fetchone("SELECT count(*) FROM users")
    assert row is not None
    return int(row[0])


async def _add_user(tx: Transaction, name: str) -> None:
    await tx.execute(
        "INSERT INTO users (username, username_norm, email, email_norm, password_hash,"
        " created_at, updated_at) VALUES (%s, %s, %s, %s, 'h', 0, 0)",
        (name, name, f"{name}@example.test", f"{name}@example.test"),
    )


async def test_a_transaction_commits_every_statement(engine: PostgresEngine) -> None:
    async with engine.transaction() as tx:
        await _add_user(tx, "ann")
        await _add_user(tx, "bob")
    rows = await engine.fetchall("SELECT username FROM users ORDER BY username")
    assert [r["username"] for r in rows] == ["ann", "bob"]
    assert rows[0][0] == "ann"


async def test_a_transaction_that_raises_leaves_nothing(engine: PostgresEngine) -> None:
    with pytest.raises(RuntimeError):
        async with engine.transaction() as tx:
            await _add_user(tx, "ann")
            raise RuntimeError("half way")
    with pytest.raises(psycopg.errors.UniqueViolation):
        async with engine.transaction() as tx:
            await _add_user(tx, "bob")
            await _add_user(tx, "bob")
    async with engine.transaction() as tx:
        assert await _user_count(tx) == 0
    # The connections went back usable: the pool still serves transactions.
    assert await engine.execute("DELETE FROM users") == 0


async def test_serializable_units_are_run_again_until_they_commit(engine: PostgresEngine) -> None:
    """Two serializable read-then-write units on the same rows: PostgreSQL aborts
    one with a serialization failure; run() runs it again and both commit."""
    await engine.execute(
        "INSERT INTO rate_counters (bucket, window_start, hits) VALUES ('k', 0, 0)"
    )
    runs = 0
    both_read = asyncio.Barrier(2)

    async def bump(tx: Transaction) -> None:
        nonlocal runs
        runs += 1
        row = await tx.fetchone("SELECT hits FROM rate_counters WHERE bucket = 'k'")
        assert row is not None
        if runs <= 2:
            await both_read.wait()  # both first runs read the same value
        await tx.execute("UPDATE rate_counters SET hits = %s WHERE bucket = 'k'", (row[0] + 1,))

    await asyncio.wait_for(asyncio.gather(engine.run(bump), engine.run(bump)), WAIT)
    row = await engine.fetchone("SELECT hits FROM rate_counters")
    assert row is not None and row[0] == 2  # no update lost
    assert runs == 3  # one unit ran twice


async def test_read_committed_is_the_default_and_serializable_can_be_asked(
    engine: PostgresEngine,
) -> None:
    async with engine.transaction() as tx:
        row = await tx.fetchone("SHOW transaction_isolation")
        assert row is not None and row[0] == "read committed"
    async with engine.transaction("serializable") as tx:
        row = await tx.fetchone("SHOW transaction_isolation")
        assert row is not None and row[0] == "serializable"


async def test_now_is_the_database_servers_clock(
    engine: PostgresEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time()
    # A host clock gone wrong does not move the clock instances compare.
    monkeypatch.setattr(time, "time", lambda: 0.0)
    first = await engine.now()
    async with engine.transaction() as tx:
        await tx.execute("SELECT pg_sleep(0.05)")
    second = await engine.now()
    monkeypatch.undo()
    assert abs(first - real) < 60
    # clock_timestamp(), not the transaction's start: it moves on between calls.
    assert second - first >= 0.05


async def test_the_pool_holds_pool_size_connections_and_no_more(
    pg_url: str, pg_server: str
) -> None:
    engine = await PostgresEngine.open(pg_url, pool_size=3)
    try:
        pids: set[int] = set()
        peak = 0

        async def hold() -> None:
            nonlocal peak
            async with engine.transaction() as tx:
                row = await tx.fetchone("SELECT pg_backend_pid()")
                assert row is not None
                pids.add(row[0])
                await tx.execute("SELECT pg_sleep(0.05)")
                row = await tx.fetchone(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'resetd'"
                )
                assert row is not None
                peak = max(peak, row[0])

        await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(12))), WAIT)
        assert len(pids) == 3
        assert peak == 3
    finally:
        await engine.close()


async def test_each_connection_searches_its_schema_and_names_itself(pg_url: str) -> None:
    engine = await open_migrated(pg_url, pool_size=1, schema="app_one")
    try:
        async with engine.transaction() as tx:
            path = await tx.fetchone("SHOW search_path")
            name = await tx.fetchone("SHOW application_name")
        assert path is not None and path[0] == "app_one"
        assert name is not None and name[0] == "resetd"
    finally:
        await engine.close()


async def test_two_schemas_in_one_database_do_not_see_each_other(pg_url: str) -> None:
    a = await open_migrated(pg_url, pool_size=2, schema="app_a")
    b = await open_migrated(pg_url, pool_size=2, schema="app_b")
    try:
        async with a.transaction() as tx:
            await _add_user(tx, "ann")
        async with b.transaction() as tx:
            assert await _user_count(tx) == 0
            await _add_user(tx, "ann")  # the same name: another table
        async with a.transaction() as tx:
            assert await _user_count(tx) == 1
        # Notifications are per schema too.
        heard_b: asyncio.Queue[str | None] = asyncio.Queue()
        listener = b.listen("wake", heard_b.put_nowait)
        await asyncio.wait_for(listener.wait_listening(), WAIT)
        async with a.transaction() as tx:
            await notify(tx, "wake", "for a")
        async with b.transaction() as tx:
            await notify(tx, "wake", "for b")
        assert await asyncio.wait_for(heard_b.get(), WAIT) == "for b"
    finally:
        await a.close()
        await b.close()


async def test_notify_reaches_another_instance_once_committed(pg_url: str) -> None:
    one = await PostgresEngine.open(pg_url, pool_size=1)
    two = await PostgresEngine.open(pg_url, pool_size=1)
    try:
        heard: asyncio.Queue[str | None] = asyncio.Queue()
        listener = one.listen("outbox", heard.put_nowait)
        await asyncio.wait_for(listener.wait_listening(), WAIT)
        with pytest.raises(RuntimeError):
            async with two.transaction() as tx:
                await notify(tx, "outbox", "rolled back")
                raise RuntimeError
        async with two.transaction() as tx:
            await notify(tx, "outbox", "17")
        assert await asyncio.wait_for(heard.get(), WAIT) == "17"
        assert heard.empty()
    finally:
        await one.close()
        await two.close()


async def test_a_listener_comes_back_after_its_connection_is_killed(
    pg_url: str, pg_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    one = await PostgresEngine.open(pg_url, pool_size=1)
    two = await PostgresEngine.open(pg_url, pool_size=1)
    try:
        heard: asyncio.Queue[str | None] = asyncio.Queue()
        listener = one.listen("outbox", heard.put_nowait)
        await asyncio.wait_for(listener.wait_listening(), WAIT)
        killed = listener.backend_pid
        admin(pg_server, f"SELECT pg_terminate_backend({killed})")
        # Back: told that something may have been missed, then hearing again.
        assert await asyncio.wait_for(heard.get(), WAIT) is None
        assert listener.backend_pid not in (None, killed)
        async with two.transaction() as tx:
            await notify(tx, "outbox", "after")
        assert await asyncio.wait_for(heard.get(), WAIT) == "after"
        assert listener.reconnections == 1
        assert any("connection lost" in r.getMessage() for r in caplog.records)
    finally:
        await one.close()
        await two.close()


async def test_from_config_opens_a_migrated_engine_for_a_block_and_closes_it(
    pg_empty_url: str, make_config: Any
) -> None:
    cfg = make_config(database={"url": pg_empty_url, "pool_size": 2, "schema": "shop_resetd"})
    async with from_config(cfg.database) as engine:
        assert (engine.schema, engine.pool.max_size) == ("shop_resetd", 2)
        assert await schema_is_current(engine)
    assert engine.pool.closed
