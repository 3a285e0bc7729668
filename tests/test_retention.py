"""``[database] keep_days``: sent mail, dead tokens and audit events older than
that are pruned in the background, a batch at a time; what still matters
(pending and failed mail, young rows) is kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from resetd import retention
from resetd.app import create_app
from resetd.config import ConfigError
from resetd.db import Database
from resetd.reset.compose import ComposedMail
from resetd.reset.tokens import Claims
from resetd.retention import Retention
from resetd.storage.sqlite import SqliteStorage
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import ConfigFactory, eventually
from .sqlite_rows import app_db, audit_row, enqueue_mail, record_token

DAY = 86400
OLD = time.time() - 40 * DAY  # past the default 30 days


async def fill(db: Database) -> None:
    """Two of each kind of row (one to age, one young), and old mail still to send."""
    store = SqliteOutbox(db)
    async with db.transaction() as conn:
        for n in range(4):
            mail = ComposedMail("r@example.test", f"u{n}@example.com", "Hi", b"Subject: Hi")
            await enqueue_mail(conn, "notice", mail)
        for n, at in enumerate((OLD, time.time())):
            expires = int(at) + 600
            await record_token(conn, Claims(1, f"jti-{n}", int(at), expires, "fp"))
            await audit_row(conn, "login", f"success {n}")
    sent = await store.claim_due(2, lease=60)
    assert await store.mark_sent(sent) == []
    [failing, _pending] = await store.claim_due(2, lease=60)
    assert await store.mark_failed(failing, "550 no such user", "rejected")
    # Age them: the first sent mail, the failed and the pending one, one token
    # (used) and the oldest audit rows.
    await db.execute("UPDATE outbox SET created_at = ?, sent_at = ? WHERE id = 1", (OLD, OLD))
    await db.execute("UPDATE outbox SET created_at = ? WHERE id IN (3, 4)", (OLD,))
    await db.execute("UPDATE reset_tokens SET used_at = ? WHERE jti = 'jti-0'", (OLD + 60,))
    await db.execute("UPDATE audit SET at = ? WHERE outcome = 'success 0'", (OLD,))


async def test_old_sent_mail_dead_tokens_and_old_audit_events_are_pruned(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        await fill(db)
        gone = await Retention(SqliteStorage(db), keep_days=30).prune()
        assert gone == {"outbox": 1, "reset_tokens": 1, "audit": 1}
        outbox = await db.fetchall("SELECT id, status FROM outbox ORDER BY id")
        assert [(r["id"], r["status"]) for r in outbox] == [
            (2, "sent"),
            (3, "failed"),  # old, but an operator may still retry it
            (4, "pending"),  # old, and still to be sent
        ]
        assert [r[0] for r in await db.fetchall("SELECT jti FROM reset_tokens")] == ["jti-1"]
        left = await db.fetchall("SELECT outcome FROM audit")
        assert "success 0" not in [r[0] for r in left]
        assert "success 1" in [r[0] for r in left]
        assert await Retention(SqliteStorage(db), keep_days=30).prune() == {
            "outbox": 0,
            "reset_tokens": 0,
            "audit": 0,
        }
    finally:
        await db.close()


async def test_keep_days_0_keeps_everything(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        await fill(db)
        assert await Retention(SqliteStorage(db), keep_days=0).prune() == {
            "outbox": 0,
            "reset_tokens": 0,
            "audit": 0,
        }
        assert len(await db.fetchall("SELECT id FROM outbox")) == 4
    finally:
        await db.close()


async def test_pruning_goes_a_batch_at_a_time_letting_other_writes_in_between(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 100)
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        async with db.transaction() as conn:
            for n in range(1050):
                await audit_row(conn, "login", f"old {n}")
        await db.execute("UPDATE audit SET at = ?", (OLD,))
        order: list[str] = []

        async def prune() -> None:
            gone = await Retention(SqliteStorage(db), keep_days=30).prune()
            assert gone["audit"] == 1050
            order.append("pruned")

        async def write() -> None:
            await asyncio.sleep(0.02)  # once pruning has begun
            async with db.transaction() as conn:
                await audit_row(conn, "login", "new")
            order.append("written")

        await asyncio.gather(prune(), write())
        # Eleven batches with a pause between them: the write got its turn.
        assert order == ["written", "pruned"]
        assert [r["outcome"] for r in await db.fetchall("SELECT outcome FROM audit")] == ["new"]
    finally:
        await db.close()


async def test_a_running_app_prunes_in_the_background(
    aiohttp_client: Any, make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, database={"keep_days": 30})
    db = await Database.open(cfg.database.path)
    try:
        await fill(db)
    finally:
        await db.close()
    monkeypatch.setattr(retention, "FIRST_AFTER", 0.0)
    client = await aiohttp_client(create_app(cfg))
    db = app_db(client.app)

    async def pruned() -> bool:
        rows = await db.fetchall("SELECT jti FROM reset_tokens")
        return [r[0] for r in rows] == ["jti-1"]

    assert await eventually(pruned, timeout=3)
    assert len(await db.fetchall("SELECT id FROM outbox")) == 3


def test_keep_days_out_of_range_is_one_line_naming_the_key(make_config: ConfigFactory) -> None:
    for bad in (-1, 36501):
        with pytest.raises(ConfigError) as info:
            make_config(database={"keep_days": bad})
        assert str(info.value) == (
            f"[database] keep_days: expected 0 (keep everything) to 36500 days, got {bad}"
        )
