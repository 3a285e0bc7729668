"""The storage's units of work: all or nothing, at the storage's clock.

The password change is one :class:`~resetd.storage.Transaction`: when any of
its steps is refused, the token, the hash, the sessions, the sign-in limits,
the outbox and the audit trail are all as they were, and the same link works
once the refusal is gone. A :class:`~resetd.storage.Batch` likewise commits
whole or not at all, and both read one clock: the storage's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from resetd import keys
from resetd.app import create_app
from resetd.config import LimitsConfig
from resetd.db import Database
from resetd.login_guard import account_buckets
from resetd.reset.intake import Intake, Submission
from resetd.storage import Batch
from resetd.storage.sqlite import SqliteStorage
from resetd.users import fingerprint

from .helpers import GOOD_PASSWORD, NEW_PASSWORD, ConfigFactory, add_user, set_new_password
from .sqlite_rows import app_db, record_token

REFUSE_NOTICE = (
    "CREATE TRIGGER refuse_notice BEFORE INSERT ON outbox WHEN NEW.kind = 'password_changed' "
    "BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
)


async def _snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    tables = {
        "reset_tokens": "SELECT jti, used_at, burned_at FROM reset_tokens",
        "users": "SELECT id, password_hash FROM users",
        "sessions": "SELECT id, user_id FROM sessions",
        "rate_counters": "SELECT bucket, hits FROM rate_counters",
        "outbox": "SELECT kind, recipient FROM outbox",
        "audit": "SELECT event, outcome FROM audit WHERE event = 'password_reset'",
    }
    return {name: [tuple(r) for r in await db.fetchall(sql)] for name, sql in tables.items()}


async def test_a_refused_step_of_the_password_change_leaves_every_table_as_it_was(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await aiohttp_client(create_app(make_config(dev_inbox={"enabled": False})))
    app = client.app
    db = app_db(app)
    user = await add_user(app)
    token, claims = app[keys.codec].mint(user.id, fingerprint(user))
    now = time.time()
    async with db.transaction() as conn:
        await record_token(conn, claims)
        # A signed-in session and failed sign-ins: the change ends and forgets them.
        await conn.execute(
            "INSERT INTO sessions (id, user_id, remember, created_at, last_seen) "
            "VALUES ('s1', ?, 0, ?, ?)",
            (str(user.id), now, now),
        )
        bucket = account_buckets(user.username)[0]
        await conn.execute(
            "INSERT INTO rate_counters (bucket, window_start, hits) VALUES (?, ?, 3)",
            (bucket, int(now)),
        )
        # The notice is the last write before the audit row: everything else is done
        # by the time it is refused.
        await conn.execute(REFUSE_NOTICE)
    before = await _snapshot(db)

    resp = await set_new_password(client, token)
    assert resp.status == 500
    assert await _snapshot(db) == before
    stored = await app[keys.users].get(user.id)
    assert stored is not None
    assert await app[keys.hasher].verify(stored.password_hash, GOOD_PASSWORD)

    await db.execute("DROP TRIGGER refuse_notice")
    resp = await set_new_password(client, token)
    assert resp.status == 303
    after = await _snapshot(db)
    assert after["reset_tokens"][0][1] is not None  # used
    assert after["sessions"] == [] and after["rate_counters"] == []
    assert after["outbox"] == [("password_changed", user.email)]
    assert after["audit"] == [("password_reset", "success")]
    stored = await app[keys.users].get(user.id)
    assert stored is not None
    assert await app[keys.hasher].verify(stored.password_hash, NEW_PASSWORD)


async def test_a_batch_that_raises_writes_nothing(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "r.db"))
    storage = SqliteStorage(db)

    def queue_then_fail(tx: Batch) -> None:
        tx.requests.add_many([("a@example.com", "a@example.com", "192.0.2.1", "ua", False, "en")])
        tx.audit.record_many([("reset_requested", "test", None, None, None)])
        raise RuntimeError("refused after writing")

    try:
        try:
            await storage.batch(queue_then_fail)
        except RuntimeError:
            pass
        else:
            raise AssertionError("the batch's error was swallowed")
        assert await db.fetchall("SELECT id FROM reset_requests") == []
        assert await db.fetchall("SELECT id FROM audit") == []
    finally:
        await storage.close()


async def test_rate_limit_windows_and_queued_requests_read_the_storages_clock(
    tmp_path: Path,
) -> None:
    db = await Database.open(str(tmp_path / "r.db"))
    # Far from the process's clock: anything that read time.time() would show.
    storage = SqliteStorage(db, clock=lambda: 1_000_000_123.5)
    intake = Intake(storage, LimitsConfig(), lambda: None)
    await intake.start()
    try:
        submission = Submission("a@example.com", "192.0.2.1", "ua", "a@example.com")
        assert await intake.submit(submission) is None
    finally:
        await intake.stop()
    try:
        [row] = await db.fetchall("SELECT created_at FROM reset_requests")
        assert row[0] == 1_000_000_123.5
        starts = {r[0] for r in await db.fetchall("SELECT window_start FROM rate_counters")}
        assert starts and all(1_000_000_123.5 - 86400 < s <= 1_000_000_123.5 for s in starts)
        assert await storage.now() == 1_000_000_123.5
        async with storage.transaction() as tx:
            assert tx.now == 1_000_000_123.5
    finally:
        await storage.close()
