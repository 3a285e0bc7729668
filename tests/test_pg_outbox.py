"""The outbox on PostgreSQL keeps SQLite's rules, shared by several instances.

The rules, on both engines (``queue_db``): due mail is claimed oldest first
and counts its attempt; a claim has an owner and a lease, and an instance
starting (or looking for orphans) releases only the claims of dead owners
and of lapsed leases, never a live instance's mid-send; only the owner
renews, records or gives back its claim. Then what PostgreSQL adds: instances
claiming at once never get the same row and never wait for each other; a
queued mail wakes every instance's worker at once (LISTEN/NOTIFY), and a
mail whose wake-up was lost is still found by the poll.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from resetd.instance import this_host
from resetd.outbox import OutboxWorker
from resetd.storage.outbox import OutboxStore, RelayStatus, RelayStatusStore
from resetd.storage.postgres import outbox as pg_outbox
from resetd.storage.postgres.engine import PostgresEngine
from resetd.storage.postgres.liveness import lock_of, with_liveness
from resetd.storage.postgres.outbox import PostgresOutbox

from . import queue_stores
from .helpers import ConfigFactory, eventually
from .queue_stores import QueueDb, event, mail
from .relays import SLOW, Relay

queue_db = queue_stores.queue_db  # the fixture: each test below on both engines
WAIT = 15.0  # every wait below is bounded: a wake-up that never comes fails the test
FAST = {"retry_base": 0.1, "backoff_cap": 0.5, "timeout": 10.0}


async def test_due_mail_is_claimed_oldest_due_first_counting_the_attempt(
    queue_db: QueueDb,
) -> None:
    first, second, later = await queue_db.queue(3)
    now = await queue_db.now()
    await queue_db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (now - 10, second))
    await queue_db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (now + 60, later))
    store = queue_db.outbox("a")

    claimed = await store.claim_due(5, lease=60)
    assert [(m.id, m.attempts) for m in claimed] == [(second, 1), (first, 1)]
    assert (claimed[1].recipient, claimed[1].user_id) == ("u0@example.com", "7")
    assert claimed[1].message.startswith(b"From: r@example.test")
    assert await store.claim_due(5, lease=60) == []  # claimed, or not due yet
    due = await store.next_due_at()
    assert due is not None and abs(due - (now + 60)) < 1

    await store.release([second])  # shut down before trying it: the attempt is refunded
    [again] = await store.claim_due(5, lease=60, held=[first])
    assert (again.id, again.attempts) == (second, 1)


async def test_an_instance_starting_leaves_a_live_claim_and_releases_a_lapsed_one(
    queue_db: QueueDb,
) -> None:
    """The bug of two instances on one database: B starting while A sends must
    not release A's claim (and send that mail again)."""
    await queue_db.queue(2)
    live, lapsed = queue_db.outbox(None), queue_db.outbox(None)
    [kept] = await live.claim_due(1, lease=60)
    [dropped] = await lapsed.claim_due(1, lease=60)
    await queue_db.execute("UPDATE outbox SET claimed_until = 1 WHERE id = ?", (dropped.id,))

    starting = queue_db.outbox(None)
    assert await starting.recover() == 1
    assert [m.id for m in await starting.claim_due(10, lease=60)] == [dropped.id]
    assert await live.renew([kept.id], 60) == 1
    assert await lapsed.mark_sent([dropped]) == [dropped]  # no longer its claim
    assert await starting.mark_sent([dropped]) == []
    assert await live.mark_sent([kept]) == []
    audit = await queue_db.fetchall("SELECT outcome FROM audit WHERE event = 'mail_sent'", ())
    assert sorted(r[0] for r in audit) == sorted(
        [f"notice outbox={kept.id}", f"notice outbox={dropped.id}"]
    )
    [sent] = await queue_db.fetchall("SELECT message FROM outbox WHERE id = ?", (kept.id,))
    assert bytes(sent[0]) == b""  # the delivered link is not kept


async def test_only_the_owner_of_a_claim_renews_records_or_gives_it_back(
    queue_db: QueueDb,
) -> None:
    await queue_db.queue(1)
    owner, other = queue_db.outbox("owner/1/aa"), queue_db.outbox("other/2/bb")
    [m] = await owner.claim_due(1, lease=60)
    assert await other.renew([m.id], 3600) == 0
    assert not await other.schedule_retry(m.id, 0, "451 not yours")
    assert not await other.mark_failed(m, "550 not yours", "rejected")
    assert await other.mark_sent([m]) == [m]
    await other.release([m.id])
    [row] = await queue_db.fetchall(
        "SELECT status, claimed_by, last_error, attempts, claimed_until FROM outbox", ()
    )
    assert tuple(row)[:4] == ("pending", "owner/1/aa", None, 1)
    assert row[4] < await queue_db.now() + 61  # not renewed to an hour
    assert not await queue_db.fetchall("SELECT id FROM audit", ())

    assert await owner.renew([m.id], 120) == 1
    assert await owner.schedule_retry(m.id, 0, "451 try later")
    [m] = await owner.claim_due(1, lease=60)
    assert m.attempts == 2
    assert await owner.mark_failed(m, "550 no such user", "rejected", keep_last_error=True)
    [row] = await queue_db.fetchall("SELECT status, last_error FROM outbox", ())
    assert tuple(row) == ("failed", "550 no such user (last error: 451 try later)")
    [audit] = await queue_db.fetchall("SELECT event, outcome, user_id FROM audit", ())
    assert tuple(audit) == ("mail_failed", f"notice outbox={m.id} rejected", "7")


async def test_a_claim_of_a_dead_process_on_this_host_is_released_at_once(
    queue_db: QueueDb,
) -> None:
    await queue_db.queue(1)
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()  # a pid that is no process now
    dead = queue_db.outbox(f"{this_host()}/{proc.pid}/0badcafe")
    elsewhere = queue_db.outbox(f"other-host.example/{os.getpid()}/0badcafe")
    await dead.claim_due(1, lease=3600)
    assert await queue_db.outbox(None).release_orphans() == 1
    await elsewhere.claim_due(1, lease=3600)
    assert await queue_db.outbox(None).release_orphans() == 0  # another host: its lease
    assert await queue_db.outbox(None).recover() == 0


async def test_a_mail_retried_later_waits_for_its_time_and_for_another_instances_claim(
    queue_db: QueueDb,
) -> None:
    [mail_id] = await queue_db.queue(1)
    a, b = queue_db.outbox("a"), queue_db.outbox("b")
    [m] = await a.claim_due(1, lease=30)
    now = await queue_db.now()
    assert abs((await b.next_due_at() or 0) - (now + 30)) < 1  # a's claim first runs out
    assert await a.next_due_at() is None  # its own claim: nothing for it to wait for
    assert await a.schedule_retry(m.id, now + 5, "451 later")
    assert await b.claim_due(1, lease=30) == []
    assert abs((await b.next_due_at() or 0) - (now + 5)) < 1
    entry = await b.get(mail_id)
    assert entry is not None and (entry.status, entry.last_error) == ("pending", "451 later")
    assert await a.recover() == 0  # a restart makes it due now
    [again] = await b.claim_due(1, lease=30)
    assert (again.id, again.attempts) == (mail_id, 2)


async def test_failed_mail_is_queued_again_unless_its_link_expired(queue_db: QueueDb) -> None:
    now = await queue_db.now()
    live = await queue_db.enqueue("reset", mail("a@example.com")._replace(expires_at=now + 600))
    dead = await queue_db.enqueue("reset", mail("b@example.com")._replace(expires_at=now + 600))
    store = queue_db.outbox(None)
    for m in await store.claim_due(2, lease=60):
        assert await store.mark_failed(m, "550 no", "rejected")
    await queue_db.execute("UPDATE outbox SET expires_at = ? WHERE id = ?", (now - 1, dead))
    assert await store.retry(dead) == (0, 1)
    assert await store.retry(None) == (1, 1)
    entries = {e.id: e for e in await store.list()}
    assert (entries[live].status, entries[live].attempts) == ("pending", 0)
    assert entries[dead].status == "failed"
    assert await store.counts() == {"pending": 1, "failed": 1, "sent": 0}
    backlog = await store.backlog(await queue_db.now())
    assert (backlog.pending, backlog.failed) == (1, 1)
    assert 0 <= backlog.oldest_pending_age < 60


async def test_a_batch_queues_mail_and_webhook_events_for_their_own_workers(
    queue_db: QueueDb,
) -> None:
    now = await queue_db.now()

    def queue(conn: Any, outbox: Any, _requests: Any) -> None:
        outbox.enqueue_many(conn, "reset", [mail("a@example.com"), mail("b@example.com")], now)
        outbox.enqueue_many(conn, "reset", [], now)
        outbox.enqueue_events(conn, [event("ev-1")], now)

    queue_db.sync(queue)
    store = queue_db.outbox(None)
    mails = await store.claim_due(10, lease=60)
    assert sorted(m.recipient for m in mails) == ["a@example.com", "b@example.com"]
    [hook] = await store.claim_due(10, lease=60, channel="webhook")
    assert (hook.kind, hook.recipient, hook.message, hook.channel) == (
        "password.changed",
        "https://app.test/hook",
        b'{"id": 1}',
        "webhook",
    )
    assert await store.mark_sent([hook]) == []
    listed = await store.list(include_sent=True)
    assert [(e.channel, e.status, e.subject) for e in listed] == [
        ("mail", "pending", "Hello"),
        ("mail", "pending", "Hello"),
        ("webhook", "sent", "ev-1"),
    ]
    [audit] = await queue_db.fetchall("SELECT event, outcome FROM audit", ())
    assert tuple(audit) == ("webhook_sent", f"password.changed outbox={hook.id}")


async def test_the_relay_status_is_saved_loaded_and_cleared(queue_db: QueueDb) -> None:
    status: RelayStatusStore = queue_db.outbox(None).relay_status
    assert await status.load() is None
    await status.save("relay:25", RelayStatus("backing_off", 12.5, "421 busy", ""))
    await status.save("relay:587", RelayStatus("ok", 13.0))
    assert await status.load() == ("relay:587", RelayStatus("ok", 13.0))
    await status.clear()
    assert await status.load() is None


async def test_an_instance_starting_mid_send_does_not_send_that_mail_again(
    queue_db: QueueDb, make_config: ConfigFactory
) -> None:
    """The bug end to end: A's relay answers slowly; B starts while A waits for
    the 250, and the mail is delivered once."""
    relay = Relay(script=lambda n: SLOW, stall_seconds=2.0)
    port = await relay.start()
    cfg = make_config(mail={"port": port, **FAST})
    workers: list[OutboxWorker] = []

    def worker(store: OutboxStore) -> OutboxWorker:
        w = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
        workers.append(w)
        return w

    try:
        await queue_db.queue(1)
        await worker(queue_db.outbox(None)).start()

        async def in_data() -> bool:
            return relay.attempts == 1

        await eventually(in_data)
        b = queue_db.outbox(None)
        await worker(b).start()  # its recover() runs while A's 250 is still on its way
        await relay.wait_for(1)

        async def sent() -> bool:
            return (await b.counts())["sent"] == 1

        await eventually(sent)
        await asyncio.sleep(1.5)  # past B's next polls: a second copy would show
        assert relay.attempts == 1
    finally:
        for w in workers:
            await w.stop()
        await relay.stop()


# PostgreSQL: several instances at once.


@pytest.fixture
async def engines(pg_url: str) -> AsyncIterator[tuple[PostgresEngine, PostgresEngine]]:
    """Two instances' engines on one database."""
    one = await PostgresEngine.open(pg_url, pool_size=3)
    two = await PostgresEngine.open(pg_url, pool_size=3)
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


async def _queue(engine: PostgresEngine, n: int, kind: str = "notice") -> list[int]:
    ids = []
    async with engine.transaction() as tx:
        now = await pg_outbox.clock(tx)
        for i in range(n):
            ids.append(await pg_outbox.enqueue(tx, kind, mail(f"u{i}@example.com"), now))
    return ids


async def test_instances_claiming_at_once_never_get_the_same_mail(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    one, two = engines
    ids = await _queue(one, 300)
    stores = [PostgresOutbox(e, f"instance-{n}") for n, e in enumerate([one, two, one, two])]

    async def claim_all(store: PostgresOutbox) -> list[int]:
        got: list[int] = []
        while batch := await store.claim_due(7, lease=60):
            got += [m.id for m in batch]
        return got

    claims = await asyncio.gather(*(claim_all(s) for s in stores))
    everything = [i for got in claims for i in got]
    assert sorted(everything) == ids  # each mail claimed exactly once
    owners = await one.fetchall("SELECT claimed_by, count(*) FROM outbox GROUP BY claimed_by")
    assert {r[0]: r[1] for r in owners} == {
        s.owner: len(got) for s, got in zip(stores, claims, strict=True) if got
    }


async def test_claims_and_releases_skip_mail_another_transaction_has_locked_instead_of_waiting(
    engines: tuple[PostgresEngine, PostgresEngine], pg_url: str
) -> None:
    one, _ = engines
    first, second, third = await _queue(one, 3)
    await PostgresOutbox(one, "lapsed").claim_due(3, lease=60)
    await one.execute("UPDATE outbox SET claimed_until = 1")  # every lease ran out
    with psycopg.connect(pg_url) as other:  # another instance, in the middle of a claim
        other.execute("SELECT id FROM outbox WHERE id = %s FOR UPDATE", (first,))
        async with asyncio.timeout(WAIT):  # a statement that waited would hang here
            assert await PostgresOutbox(one, "b").release_orphans() == 2
            claimed = await PostgresOutbox(one, "b").claim_due(10, lease=60)
        assert [m.id for m in claimed] == [second, third]
        async with asyncio.timeout(WAIT):  # nor does an instance starting meanwhile
            assert await PostgresOutbox(one, "c").recover() == 0
        other.rollback()
    assert await PostgresOutbox(one, "c").release_orphans() == 1
    [m] = await PostgresOutbox(one, "c").claim_due(10, lease=60)
    assert (m.id, m.attempts) == (first, 2)


# An instance id made on another host: its process cannot be looked up from here.
OTHER_HOST = "host.elsewhere.example@4026531836/4242/5eed"


async def test_an_instance_that_died_on_another_host_has_its_claims_released_at_once(
    engines: tuple[PostgresEngine, PostgresEngine], pg_url: str
) -> None:
    one, _ = engines
    ids = await _queue(one, 2)
    survivor = PostgresOutbox(one)
    far = await PostgresEngine.open(pg_url, pool_size=1)
    try:
        elsewhere = PostgresOutbox(far, with_liveness(OTHER_HOST))
        await elsewhere.recover()
        assert sorted(m.id for m in await elsewhere.claim_due(10, lease=60)) == ids
        # Alive: its claims stand, with 60 s of lease left.
        assert await survivor.release_orphans() == 0
        assert await survivor.claim_due(10, lease=60) == []
    finally:
        await far.close()  # the process is gone, and its sessions with it

    async def released() -> int:
        return await survivor.release_orphans()

    assert await eventually(released, WAIT) == 2
    claimed = await survivor.claim_due(10, lease=60)
    assert [(m.id, m.attempts) for m in claimed] == [(i, 2) for i in ids]


async def test_an_instance_from_before_liveness_locks_keeps_its_claims_until_their_lease(
    engines: tuple[PostgresEngine, PostgresEngine], pg_url: str
) -> None:
    one, _ = engines
    [queued] = await _queue(one, 1)
    far = await PostgresEngine.open(pg_url, pool_size=1)
    try:
        [claimed] = await PostgresOutbox(far, OTHER_HOST).claim_due(10, lease=60)
    finally:
        await far.close()
    assert claimed.id == queued
    survivor = PostgresOutbox(one)
    assert await survivor.release_orphans() == 0  # no lock to go by: the lease decides
    await one.execute("UPDATE outbox SET claimed_until = 1")
    assert await survivor.release_orphans() == 1


async def test_an_instance_whose_lock_connection_was_cut_takes_its_lock_again(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    one, two = engines
    [queued] = await _queue(one, 1)
    alive = PostgresOutbox(two)
    await alive.recover()
    [claimed] = await alive.claim_due(10, lease=60)
    holder = alive._liveness
    assert holder is not None and holder.holds_lock
    # The lock is held by the connection named for it, under this owner's key.
    key = lock_of(alive.owner)
    row = await one.fetchone(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.classid = %s::oid AND l.objid = %s::oid "
        "AND l.objsubid = 2",
        (key[0], key[1] & 0xFFFFFFFF),
    )
    assert row is not None and row[0] == "resetd liveness"

    await one.execute("SELECT pg_terminate_backend(%s)", (holder.backend_pid,))

    async def locked_again() -> bool:
        return holder.reconnections == 1 and holder.holds_lock

    await eventually(locked_again, WAIT)
    survivor = PostgresOutbox(one)
    assert await survivor.release_orphans() == 0
    assert claimed.id == queued and await survivor.claim_due(10, lease=60) == []


async def test_queued_mail_and_events_wake_the_workers_of_another_instance(
    engines: tuple[PostgresEngine, PostgresEngine], pg_url: str
) -> None:
    one, two = engines
    watching = PostgresOutbox(one, "a")
    woken: dict[str, asyncio.Queue[None]] = {"mail": asyncio.Queue(), "webhook": asyncio.Queue()}
    mail_watch = watching.watch(lambda: woken["mail"].put_nowait(None))
    hook_watch = watching.watch(lambda: woken["webhook"].put_nowait(None), "webhook")
    await asyncio.wait_for(mail_watch.listening(), WAIT)
    try:
        async with two.transaction() as tx:
            await pg_outbox.enqueue_event(tx, event(), await pg_outbox.clock(tx))
        await asyncio.wait_for(woken["webhook"].get(), WAIT)
        await _queue(two, 2)  # one transaction: one wake-up
        await asyncio.wait_for(woken["mail"].get(), WAIT)
        # Notifications arrive in order: the event's came before the mail's.
        assert woken["mail"].empty() and woken["webhook"].empty()

        # A batch's (sync) connection notifies the same channel.
        with psycopg.connect(pg_url) as conn:
            pg_outbox.enqueue_many(conn, "reset", [mail()], await two.now())
        await asyncio.wait_for(woken["mail"].get(), WAIT)
        with pytest.raises(RuntimeError):  # nothing is heard of a rollback
            async with two.transaction() as tx:
                await pg_outbox.enqueue_event(tx, event("ev-2"), await pg_outbox.clock(tx))
                raise RuntimeError
        async with two.transaction() as tx:
            await pg_outbox.enqueue(tx, "notice", mail(), await pg_outbox.clock(tx))
        await asyncio.wait_for(woken["mail"].get(), WAIT)
        assert woken["webhook"].empty()
    finally:
        await mail_watch.stop()
        await hook_watch.stop()


async def test_a_mail_whose_wake_up_was_lost_is_still_found_by_the_poll(
    engines: tuple[PostgresEngine, PostgresEngine], make_config: ConfigFactory
) -> None:
    one, two = engines
    relay = Relay()
    port = await relay.start()
    cfg = make_config(mail={"port": port, **FAST})
    worker = OutboxWorker(PostgresOutbox(one), cfg.mail, lambda: ("127.0.0.1", port))
    await worker.start()
    try:
        # Queued with no NOTIFY at all, as if the listener had been down then.
        await two.execute(
            "INSERT INTO outbox (kind, sender, recipient, subject, message, created_at,"
            " next_attempt_at) VALUES ('notice', 'r@example.test', 'lost@example.com', 'Hi',"
            " %s, extract(epoch FROM now()), extract(epoch FROM now()))",
            (b"Subject: Hi\r\n\r\nhello\r\n",),
        )
        [received] = await relay.wait_for(1, timeout=WAIT)
        assert received.rcpt_tos == ["lost@example.com"]
    finally:
        await worker.stop()
        await relay.stop()


async def test_every_time_the_outbox_records_is_the_database_clock(
    engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    one, _ = engines
    await _queue(one, 1)
    store = PostgresOutbox(one, "a")
    before = await one.now()
    [m] = await store.claim_due(1, lease=100)
    [claim] = await one.fetchall("SELECT claimed_until FROM outbox")
    assert before + 100 <= claim[0] <= await one.now() + 100
    await store.mark_sent([m])
    after = await one.now()
    [row] = await one.fetchall("SELECT sent_at FROM outbox")
    [audit] = await one.fetchall("SELECT at FROM audit")
    assert before <= row[0] <= after and audit[0] == row[0]
