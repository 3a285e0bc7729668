"""PostgreSQL's storage where several instances share one database: a token is
used once, rate limits count exactly, keys in any order never deadlock, every
clock is the database's, and the schema's version is read from it.

What both engines share is proved in tests/test_storage_stores.py; here two
PostgresStorage objects on one database stand for two resetd instances."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg.errors import ReadOnlySqlTransaction, SerializationFailure

from resetd.config import DatabaseConfig
from resetd.storage import Batch, Storage
from resetd.storage.accounts import DuplicateUser
from resetd.storage.ledger import IssuedToken
from resetd.storage.limits import Hit, Taken
from resetd.storage.postgres import PostgresBatch, PostgresStorage, PostgresTransaction
from resetd.storage.postgres.engine import EngineError, PostgresEngine
from resetd.storage.postgres.migrations import migrate_to_newest
from resetd.storage.postgres.storage import open_batch_pool

# Bounded waits: a transaction that never reaches its lock fails the test.
WAIT = 15.0


async def _open(url: str, owner: str, pool_size: int = 4) -> PostgresStorage:
    return await PostgresStorage.open(DatabaseConfig(url=url, pool_size=pool_size), owner=owner)


@pytest.fixture
async def instances(pg_url: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    a = await _open(pg_url, "instance-a")
    b = await _open(pg_url, "instance-b")
    yield a, b
    await b.close()
    await a.close()


async def _waiting_for_a_lock(storage: PostgresStorage, count: int) -> None:
    """Until ``count`` of the database's backends wait for a row lock."""
    async with asyncio.timeout(WAIT):
        while True:
            row = await storage.engine.fetchone(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if row is not None and int(row[0]) >= count:
                return
            await asyncio.sleep(0.01)


async def _record(storage: Storage, *tokens: IssuedToken) -> None:
    def record(b: Batch) -> None:
        b.ledger.record_many(tokens)

    await storage.batch(record)


async def test_a_token_consumed_by_two_overlapping_transactions_is_used_once(
    instances: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = instances
    now = int(await a.now())
    await _record(a, IssuedToken("jti", 1, now, now + 3600))
    async with a.transaction() as first:
        assert await first.ledger.consume("jti", first.now)

        async def second() -> bool:
            async with b.transaction() as tx:
                return await tx.ledger.consume("jti", tx.now)

        # The second waits for the first's row lock while the first is still open.
        task = asyncio.create_task(second())
        await _waiting_for_a_lock(a, 1)
    assert await task is False


async def test_a_token_consumed_by_many_transactions_at_once_is_used_once(
    instances: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = instances
    now = int(await a.now())
    await _record(a, IssuedToken("jti", 1, now, now + 3600))

    async def consume(storage: Storage) -> bool:
        async with storage.transaction() as tx:
            return await tx.ledger.consume("jti", tx.now)

    results = await asyncio.gather(*(consume(s) for s in (a, b) * 8))
    assert sorted(results) == [False] * 15 + [True]


async def test_rate_limits_count_exactly_across_two_instances(
    instances: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = instances
    hits = [Hit("ip:192.0.2.1", 10, 3600), Hit("global", 1000, 3600)]
    results = await asyncio.gather(*(s.limits.take(hits) for s in (a, b) * 20))
    taken = [r for r in results if isinstance(r, Taken)]
    assert len(taken) == 10
    assert sorted(t.counts[0] for t in taken) == list(range(1, 11))
    # Refused takes counted nowhere: the global bucket holds the ten that got through.
    assert sorted(t.counts[1] for t in taken) == list(range(1, 11))

    def hit(batch: Batch) -> list[int | None]:
        return batch.limits.hit_many([Hit("global", 1000, 3600)] * 5)

    await asyncio.gather(*(s.batch(hit) for s in (a, b) * 6))
    last = await a.limits.take([Hit("global", 1000, 3600)])
    assert isinstance(last, Taken) and last.counts == [10 + 60 + 1]


async def test_keys_in_opposite_orders_on_two_instances_never_deadlock(
    instances: tuple[PostgresStorage, PostgresStorage], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = instances
    keys = [f"bucket-{n}" for n in range(8)]
    forward = [Hit(k, 10_000, 3600) for k in keys]
    backward = forward[::-1]

    def hit(batch: Batch, hits: list[Hit]) -> None:
        batch.limits.hit_many(hits)

    caplog.set_level(logging.DEBUG, logger="resetd.storage.postgres")
    await asyncio.gather(
        *(a.limits.take(forward) for _ in range(15)),
        *(b.limits.take(backward) for _ in range(15)),
        *(a.batch(hit, forward) for _ in range(6)),
        *(b.batch(hit, backward) for _ in range(6)),
    )
    # A deadlock would have been retried (engine.run, batch): none happened.
    assert [r.message for r in caplog.records if "retried" in r.message] == []
    last = await a.limits.take([Hit(keys[3], 10_000, 3600)])
    assert isinstance(last, Taken) and last.counts == [30 + 12 + 1]


async def test_forgetting_and_taking_the_same_buckets_at_once_do_not_deadlock(
    instances: tuple[PostgresStorage, PostgresStorage], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = instances
    keys = [f"acct:{n}" for n in range(6)]
    caplog.set_level(logging.DEBUG, logger="resetd.storage.postgres")

    async def forget() -> None:
        async with a.transaction() as tx:
            await tx.limits.forget(keys[::-1])

    await asyncio.gather(
        *(b.limits.take([Hit(k, 10_000, 60) for k in keys[::-1]]) for _ in range(10)),
        *(forget() for _ in range(10)),
    )
    assert [r.message for r in caplog.records if "retried" in r.message] == []


async def test_two_instances_adding_one_user_at_once_add_it_once(
    instances: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = instances
    results = await asyncio.gather(
        *(s.users.add("ann@example.com", "ann", "hash") for s in (a, b) * 4),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, DuplicateUser) for r in results if isinstance(r, BaseException))
    assert len(await b.users.list()) == 1


async def test_the_password_change_on_two_instances_at_once_changes_the_hash_once(
    instances: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = instances
    user = await a.users.add("ann@example.com", "ann", "old")
    now = int(await a.now())
    await _record(a, IssuedToken("t1", user.id, now, now + 3600))
    await _record(a, IssuedToken("t2", user.id, now, now + 3600))

    async def change(storage: Storage, jti: str, new: str) -> bool:
        async with storage.transaction() as tx:
            if not await tx.ledger.consume(jti, tx.now):
                return False
            if not await tx.accounts.replace_password_hash(user.id, "old", new):
                raise RuntimeError("stale: give the token back")
            await tx.sessions.end_all(user.id)
            await tx.audit.record("password_reset", "success", user_id=user.id)
        return True

    results = await asyncio.gather(
        change(a, "t1", "new-a"), change(b, "t2", "new-b"), return_exceptions=True
    )
    # The second to take the user's row lock finds the hash changed and rolls back.
    assert results.count(True) == 1
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    stored = await a.users.get(user.id)
    assert stored is not None and stored.password_hash in ("new-a", "new-b")
    winner = "t1" if stored.password_hash == "new-a" else "t2"
    loser = "t2" if winner == "t1" else "t1"
    used = await a.ledger.entry(winner)
    unused = await a.ledger.entry(loser)
    assert used is not None and used.used_at is not None
    assert unused is not None and unused.used_at is None  # rolled back with its transaction
    assert len(await a.audit.recent()) == 1


async def test_a_transactions_and_a_batchs_now_are_the_databases_clock_at_their_start(
    instances: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = instances
    before = await a.now()
    async with a.transaction() as tx:
        assert isinstance(tx, PostgresTransaction)
        row = await tx.tx.fetchone("SELECT extract(epoch FROM now())::float8")
        assert row is not None and tx.now == row[0]

    def read(batch: Batch) -> tuple[float, float]:
        assert isinstance(batch, PostgresBatch)
        row = batch.conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()
        assert row is not None
        return batch.now, row[0]

    now, database = await a.batch(read)
    assert now == database
    assert before <= tx.now <= now <= await a.now()


async def test_a_batch_aborted_by_a_serialization_failure_runs_again_once_whole(
    instances: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = instances
    tries: list[float] = []

    def write(batch: Batch) -> int:
        batch.audit.record_many([("reset_requested", f"try {len(tries)}", None, None, None)])
        tries.append(batch.now)
        if len(tries) == 1:
            raise SerializationFailure("could not serialize access (raised by the test)")
        return len(tries)

    assert await a.batch(write) == 2
    assert [r.outcome for r in await a.audit.recent()] == ["try 1"]


async def test_errors_name_the_drivers_and_the_engines_exceptions(
    instances: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, _ = instances

    def broken(batch: Batch) -> None:
        assert isinstance(batch, PostgresBatch)
        batch.conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(a.errors.error) as raised:
        await a.batch(broken)
    assert not isinstance(raised.value, a.errors.unavailable)  # a statement's, not the database's
    assert issubclass(EngineError, a.errors.unavailable)
    assert issubclass(psycopg.OperationalError, a.errors.unavailable)
    # After a failover the old primary may answer as a standby: the database's state too.
    assert issubclass(ReadOnlySqlTransaction, a.errors.unavailable)


async def test_opening_an_unreachable_database_raises_one_of_its_errors(pg_url: str) -> None:
    url = pg_url.replace("/resetd_test_", "/resetd_missing_")
    with pytest.raises(PostgresStorage.errors.error, match="cannot connect"):
        await _open(url, "instance-a")


async def test_the_schema_is_current_only_once_migrated(pg_empty_url: str) -> None:
    engine = await PostgresEngine.open(pg_empty_url, pool_size=2)
    storage = PostgresStorage(engine, await open_batch_pool(pg_empty_url, "public"), "instance-a")
    try:
        assert not await storage.schema_is_current()
        await migrate_to_newest(engine)
        assert await storage.schema_is_current()
        # A newer resetd sharing the database moved it on.
        await engine.execute(
            "INSERT INTO schema_version (version, applied_at, applied_by) VALUES (99, 0, 'newer')"
        )
        assert not await storage.schema_is_current()
    finally:
        await storage.close()


async def test_an_instance_in_another_schema_has_tables_of_its_own(pg_url: str) -> None:
    main = await _open(pg_url, "main")
    other = await PostgresStorage.open(
        DatabaseConfig(url=pg_url, pool_size=2, schema="other_app"), owner="other"
    )
    try:
        await main.users.add("ann@example.com", "ann", "hash")
        assert await other.users.list() == []
        assert await other.schema_is_current()

        def where(batch: Batch) -> Any:
            assert isinstance(batch, PostgresBatch)
            row = batch.conn.execute("SELECT current_schema()").fetchone()
            return None if row is None else row[0]

        assert await other.batch(where) == "other_app"
        assert await main.batch(where) == "public"
    finally:
        await other.close()
        await main.close()
