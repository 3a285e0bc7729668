"""The reset-request queue on PostgreSQL keeps SQLite's rules, shared by several
instances.

On both engines (``queue_db``): requests are read oldest first, a claim marks
each done once, a set-aside request is listed with its reason and kept longer
than the rest. On PostgreSQL: instances claiming at once each get other
requests and never wait for each other's transactions; a queued request
wakes every instance's processor.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import psycopg

from resetd.reset.compose import MailComposer
from resetd.reset.processor import RequestProcessor
from resetd.reset.tokens import TokenCodec
from resetd.storage.accounts import User
from resetd.storage.postgres import outbox as pg_outbox
from resetd.storage.postgres import requests as pg_requests
from resetd.storage.postgres.engine import PostgresEngine
from resetd.storage.postgres.requests import PostgresRequests
from resetd.storage.requests import FAILED_KEPT, NewRequest

from . import queue_stores
from .helpers import TEST_SECRET, eventually
from .queue_stores import QueueDb

queue_db = queue_stores.queue_db  # the fixture: each test below on both engines
WAIT = 15.0  # every wait below is bounded: a wake-up that never comes fails the test


def _new(n: int, limited: bool = False) -> list[NewRequest]:
    return [
        (f"u{i}@example.com", f"U{i}@example.com", "192.0.2.1", "ua", limited, "fr")
        for i in range(n)
    ]


def _add(conn: Any, _outbox: Any, requests: Any, rows: list[NewRequest], now: float) -> None:
    requests.add_many(conn, rows, now)


async def test_requests_are_read_oldest_first_and_claimed_once(queue_db: QueueDb) -> None:
    now = await queue_db.now()
    queue_db.sync(lambda c, o, r: _add(c, o, r, _new(3), now))
    queue_db.sync(lambda c, o, r: _add(c, o, r, _new(1, limited=True), now))
    pending = await queue_db.requests.pending(10)
    assert [(q.email_norm, q.email, q.limited, q.lang) for q in pending] == [
        ("u0@example.com", "U0@example.com", False, "fr"),
        ("u1@example.com", "U1@example.com", False, "fr"),
        ("u2@example.com", "U2@example.com", False, "fr"),
        ("u0@example.com", "U0@example.com", True, "fr"),
    ]
    ids = [q.id for q in pending]
    assert [q.id for q in await queue_db.requests.pending(2)] == ids[:2]

    assert queue_db.sync(lambda c, o, r: r.claim(c, ids[:2], now)) == set(ids[:2])
    assert queue_db.sync(lambda c, o, r: r.claim(c, ids, now)) == set(ids[2:])
    assert queue_db.sync(lambda c, o, r: r.claim(c, ids, now)) == set()
    assert queue_db.sync(lambda c, o, r: r.claim(c, [], now)) == set()
    assert await queue_db.requests.pending(10) == []


async def test_a_set_aside_request_is_listed_and_kept_longer_than_the_rest(
    queue_db: QueueDb,
) -> None:
    now = await queue_db.now()
    queue_db.sync(lambda c, o, r: _add(c, o, r, _new(2), now - 100))
    done, aside = [q.id for q in await queue_db.requests.pending(10)]

    def claim_and_fail(conn: Any, _o: Any, requests: Any) -> None:
        requests.claim(conn, [done, aside], now - 50)
        requests.record_failures(conn, [(aside, "account 7: " + "x" * 600)])
        requests.record_failures(conn, [])

    queue_db.sync(claim_and_fail)
    [failed] = await queue_db.requests.failed(now - 60)
    assert (failed.id, failed.created_at, failed.done_at) == (aside, now - 100, now - 50)
    assert failed.failure.startswith("account 7: x") and len(failed.failure) == 500
    assert await queue_db.requests.failed(now - 40) == []

    assert await queue_db.requests.purge(now) == 1  # the one mailed; the failure stays
    assert [f.id for f in await queue_db.requests.failed(0)] == [aside]
    assert await queue_db.requests.purge(now + FAILED_KEPT) == 1
    assert await queue_db.requests.failed(0) == []


# PostgreSQL: several instances at once.


def _queued(url: str, n: int) -> list[int]:
    with psycopg.connect(url) as conn:
        pg_requests.add_many(conn, _new(n), 1.0)
        return [int(r[0]) for r in conn.execute("SELECT id FROM reset_requests ORDER BY id")]


def test_a_claim_leaves_requests_another_instance_is_claiming_without_waiting(
    pg_url: str,
) -> None:
    ids = _queued(pg_url, 6)
    with psycopg.connect(pg_url) as one, psycopg.connect(pg_url) as two:
        # Were the claim to wait for the other transaction, it would fail here.
        two.execute("SET lock_timeout = '10s'")
        first = pg_requests.claim(one, ids[::2], 2.0)  # not committed yet
        second = pg_requests.claim(two, ids, 2.0)
        assert (first, second) == (set(ids[::2]), set(ids[1::2]))
        two.commit()
        one.rollback()  # its requests stay queued for the next look
        assert pg_requests.claim(two, ids, 3.0) == set(ids[::2])


def test_instances_claiming_the_same_requests_at_once_each_get_other_ones(pg_url: str) -> None:
    ids = _queued(pg_url, 400)
    start = threading.Barrier(4)
    got: list[set[int]] = []

    def instance(seed: int) -> None:
        order = ids[:]
        random.Random(seed).shuffle(order)
        mine: set[int] = set()
        with psycopg.connect(pg_url) as conn:
            start.wait(timeout=WAIT)
            for i in range(0, len(order), 16):
                mine |= pg_requests.claim(conn, order[i : i + 16], 2.0)
                conn.commit()
        got.append(mine)

    threads = [threading.Thread(target=instance, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == 4
    assert sum(len(g) for g in got) == len(ids)  # nobody claimed a request twice
    assert set().union(*got) == set(ids)


async def test_a_queued_request_wakes_the_processor_of_another_instance(pg_url: str) -> None:
    engine = await PostgresEngine.open(pg_url, pool_size=1)
    woken: asyncio.Queue[None] = asyncio.Queue()
    watch = PostgresRequests(engine).watch(lambda: woken.put_nowait(None))
    try:
        await asyncio.wait_for(watch.listening(), WAIT)
        with psycopg.connect(pg_url) as conn:
            pg_requests.add_many(conn, _new(3), 1.0)  # one transaction: one wake-up
            pg_requests.add_many(conn, [], 1.0)
        await asyncio.wait_for(woken.get(), WAIT)
        with psycopg.connect(pg_url) as conn:
            pg_requests.add_many(conn, _new(1), 1.0)
            conn.rollback()
            pg_requests.add_many(conn, _new(1), 1.0)
        await asyncio.wait_for(woken.get(), WAIT)
        assert woken.empty()
    finally:
        await watch.stop()
        await engine.close()


def test_requests_of_another_schema_are_not_heard(pg_url: str) -> None:
    """Channels are per schema, and a batch's connection names its own (its
    search_path's first schema), as the engine's listeners do."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE SCHEMA other_app")
        conn.execute(
            "CREATE TABLE other_app.reset_requests (LIKE public.reset_requests INCLUDING ALL)"
        )
        conn.execute("SET search_path TO other_app")
        conn.execute('LISTEN "other_app.reset_requests"')
        conn.execute('LISTEN "public.reset_requests"')
        conn.commit()
        pg_requests.add_many(conn, _new(1), 1.0)
        conn.commit()
        heard = [n.channel for n in conn.notifies(timeout=1.0, stop_after=1)]
    assert heard == ["other_app.reset_requests"]


async def test_processors_reading_the_queue_at_once_each_get_other_requests(
    pg_url: str,
) -> None:
    """No request is looked up and rendered by two instances: while a processor
    watches, its read reserves what it returns until its next read."""
    ids = _queued(pg_url, 6)
    one = await PostgresEngine.open(pg_url, pool_size=1)
    two = await PostgresEngine.open(pg_url, pool_size=1)
    a, b = PostgresRequests(one), PostgresRequests(two)
    watch_a, watch_b = a.watch(lambda: None), b.watch(lambda: None)
    try:
        assert [q.id for q in await a.pending(2)] == ids[0:2]
        assert [q.id for q in await b.pending(2)] == ids[2:4]
        # A's next read: its batch before is given up, B's is passed by.
        assert [q.id for q in await a.pending(10)] == [*ids[0:2], *ids[4:6]]
        # A read outside a processor (a listing) sees the whole queue.
        assert [q.id for q in await PostgresRequests(one).pending(10)] == ids
        await watch_b.stop()  # B's processor stops: what it held is free
        assert [q.id for q in await a.pending(10)] == ids

        # An instance that dies holds nothing: its connection takes the locks along.
        # (A's reservations are the only ones now; terminating waits for the end.)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = 'resetd reservations'"
            ).fetchall()
        assert killed == [(True,)]
        watch_b = b.watch(lambda: None)
        assert [q.id for q in await b.pending(10)] == ids
        assert len(await a.pending(10)) == 6  # A's connection is gone: read unreserved
        assert await a.pending(10) == []  # then reserving again, on a new one
    finally:
        await watch_a.stop()
        await watch_b.stop()
        await one.close()
        await two.close()


class _Accounts:
    """Accounts by address, counting how often each address is looked up."""

    def __init__(self, emails: list[str]) -> None:
        self.users = {e: User(n, f"user{n}", e, "$unused") for n, e in enumerate(emails, 1)}
        self.lookups: Counter[str] = Counter()

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]:
        self.lookups.update(email_norms)
        await asyncio.sleep(0.01)  # an app's database answering: others read meanwhile
        return {e: [self.users[e]] for e in email_norms if e in self.users}


class _QueueStorage:
    """What the request processor uses of a storage, on PostgreSQL: the queue
    and the outbox (the ledger and the audit trail are left out here)."""

    errors = pg_outbox.ERRORS

    def __init__(self, engine: PostgresEngine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.requests = PostgresRequests(engine)
        self.limits = SimpleNamespace(purge=self._nothing)

    async def _nothing(self, *_: object) -> None:
        return None

    async def now(self) -> float:
        return await self.engine.now()

    async def batch(self, fn: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            with psycopg.connect(self.url) as conn:
                row = conn.execute(pg_outbox.CLOCK).fetchone()
                assert row is not None
                return fn(_batch(conn, float(row[0])), *args)

        return await asyncio.to_thread(run)


def _batch(conn: psycopg.Connection[Any], now: float) -> SimpleNamespace:
    def nothing(*_: object) -> None:
        return None

    return SimpleNamespace(
        now=now,
        requests=SimpleNamespace(
            claim=lambda ids: pg_requests.claim(conn, ids, now),
            record_failures=lambda failures: pg_requests.record_failures(conn, failures),
        ),
        outbox=SimpleNamespace(
            enqueue_many=lambda kind, mails: pg_outbox.enqueue_many(conn, kind, mails, now),
            enqueue_events=lambda events: pg_outbox.enqueue_events(conn, events, now),
        ),
        ledger=SimpleNamespace(record_many=nothing),
        audit=SimpleNamespace(record_many=nothing),
    )


async def test_two_processors_look_up_and_mail_each_request_once(pg_url: str) -> None:
    emails = [f"u{i}@example.com" for i in range(300)]
    known = emails[::3]
    with psycopg.connect(pg_url) as conn:
        pg_requests.add_many(conn, [(e, e, "192.0.2.1", "ua", False, "en") for e in emails], 1.0)
    accounts = _Accounts(known)
    codec = TokenCodec(TEST_SECRET, ttl=600)
    composer = MailComposer("resetd <no-reply@example.test>", "http://localhost:8080")
    engines = [await PostgresEngine.open(pg_url, pool_size=2) for _ in range(2)]
    processors = [
        RequestProcessor(_QueueStorage(e, pg_url), accounts, codec, composer, lambda: None)
        for e in engines
    ]
    for p in processors:
        p.BATCH = 16  # many batches, each instance reading while the other works
        await p.start()
    try:

        async def all_done() -> bool:
            rows = await engines[0].fetchall(
                "SELECT count(*) FROM reset_requests WHERE done_at IS NULL"
            )
            return rows[0][0] == 0

        await eventually(all_done, timeout=60)
    finally:
        for p in processors:
            await p.stop()
        for e in engines:
            await e.close()
    assert sorted(accounts.lookups) == sorted(emails)
    assert set(accounts.lookups.values()) == {1}  # nobody looked up twice
    with psycopg.connect(pg_url) as conn:
        mailed = [r[0] for r in conn.execute("SELECT recipient FROM outbox")]
    assert sorted(mailed) == sorted(known)
