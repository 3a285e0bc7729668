"""The outbox and the reset-request queue on each engine, for tests of rules both
must share: the ``queue_db`` fixture runs a test twice, ``[sqlite]`` on a
temporary file and ``[postgresql]`` on a fresh migrated database (``pg_url``:
skipped, or failed under CI, as tests/pg.py decides).

Several outbox stores on one database stand for several resetd instances.
Statements written here use ``?`` placeholders on both engines.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

from resetd.db import Database
from resetd.reset.compose import ComposedMail
from resetd.storage.outbox import NewEvent, NewMail, OutboxStore
from resetd.storage.requests import RequestStore
from resetd.storage.sqlite import outbox as sqlite_outbox
from resetd.storage.sqlite import requests as sqlite_requests
from resetd.storage.sqlite.outbox import SqliteOutbox
from resetd.storage.sqlite.requests import SqliteRequests

T = TypeVar("T")
# fn(connection, outbox module, requests module), run in one committed transaction
SyncUnit = Callable[[Any, ModuleType, ModuleType], T]


def mail(to: str = "u@example.com", subject: str = "Hello") -> NewMail:
    data = f"From: r@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhi\r\n".encode()
    return NewMail(ComposedMail("r@example.test", to, subject, data), user_id=7)


def event(event_id: str = "ev-1") -> NewEvent:
    return NewEvent("password.changed", event_id, b'{"id": 1}', "https://app.test/hook", 7)


@dataclass
class QueueDb:
    """One database, on either engine."""

    engine: str  # "sqlite" or "postgresql"
    outbox: Callable[[str | None], OutboxStore]  # a store for an instance (owner)
    requests: RequestStore
    now: Callable[[], Awaitable[float]]  # the database's clock
    fetchall: Callable[[str, Sequence[object]], Awaitable[list[Any]]]
    execute: Callable[[str, Sequence[object]], Awaitable[int]]
    enqueue: Callable[[str, NewMail], Awaitable[int]]  # in a transaction of its own
    enqueue_event: Callable[[NewEvent], Awaitable[int]]
    sync: Callable[[SyncUnit[Any]], Any]  # a batch's functions, on a sync connection

    async def queue(self, n: int, kind: str = "notice") -> list[int]:
        return [await self.enqueue(kind, mail(f"u{i}@example.com")) for i in range(n)]


@pytest.fixture(params=["sqlite", "postgresql"])
async def queue_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueDb]:
    if request.param == "sqlite":
        path = str(tmp_path / "queue.db")
        db = await Database.open(path)

        async def enqueue(kind: str, new: NewMail) -> int:
            async with db.transaction() as conn:
                return await sqlite_outbox.enqueue(conn, kind, new, await db.now())

        async def enqueue_event(e: NewEvent) -> int:
            async with db.transaction() as conn:
                return await sqlite_outbox.enqueue_event(conn, e, await db.now())

        def sync(fn: SyncUnit[T]) -> T:
            conn = sqlite3.connect(path)
            try:
                with conn:
                    return fn(conn, sqlite_outbox, sqlite_requests)
            finally:
                conn.close()

        try:
            yield QueueDb(
                "sqlite",
                lambda owner: SqliteOutbox(db, owner),
                SqliteRequests(db),
                db.now,
                db.fetchall,
                db.execute,
                enqueue,
                enqueue_event,
                sync,
            )
        finally:
            await db.close()
        return

    import psycopg

    from resetd.storage.postgres import outbox as pg_outbox
    from resetd.storage.postgres import requests as pg_requests
    from resetd.storage.postgres.engine import PostgresEngine

    url: str = request.getfixturevalue("pg_url")
    engine = await PostgresEngine.open(url, pool_size=3)

    async def pg_enqueue(kind: str, new: NewMail) -> int:
        async with engine.transaction() as tx:
            return await pg_outbox.enqueue(tx, kind, new, await pg_outbox.clock(tx))

    async def pg_enqueue_event(e: NewEvent) -> int:
        async with engine.transaction() as tx:
            return await pg_outbox.enqueue_event(tx, e, await pg_outbox.clock(tx))

    async def fetchall(query: str, params: Sequence[object] = ()) -> list[Any]:
        return await engine.fetchall(query.replace("?", "%s"), params)

    async def execute(query: str, params: Sequence[object] = ()) -> int:
        return await engine.execute(query.replace("?", "%s"), params)

    def pg_sync(fn: SyncUnit[T]) -> T:
        with psycopg.connect(url) as conn:  # commits when the block ends
            return fn(conn, pg_outbox, pg_requests)

    try:
        yield QueueDb(
            "postgresql",
            lambda owner: pg_outbox.PostgresOutbox(engine, owner),
            pg_requests.PostgresRequests(engine),
            engine.now,
            fetchall,
            execute,
            pg_enqueue,
            pg_enqueue_event,
            pg_sync,
        )
    finally:
        await engine.close()
