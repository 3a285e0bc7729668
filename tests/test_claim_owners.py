"""Claims have an owner: two ``resetd serve`` processes on one SQLite file.

An instance starting while another one sends must leave that mail alone (its
start-up used to release every claim, and both sent it); an instance that
dies holding mail has it taken over by one still running. Below, the same
rules on the store: a claim is released only when its lease ran out or its
owner is dead, and only the owner records an outcome.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from resetd.db import Database
from resetd.instance import known_dead, new_instance_id, this_host
from resetd.outbox import OutboxWorker
from resetd.reset.compose import ComposedMail
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import ConfigFactory, eventually
from .processes import (
    DbTarget,
    Server,
    db_target,
    outbox_rows,
    relay_config,
    request_reset_over_http,
)
from .raw_relay import RawRelay
from .relays import ACCEPT, SLOW, Relay
from .sqlite_rows import enqueue_mail
from .test_lifecycle import add_users

EMAIL = "susan@example.com"


@pytest.fixture
async def two_servers(
    tmp_path: Path, database_section: dict[str, Any]
) -> AsyncIterator[tuple[Server, Server, Relay, DbTarget]]:
    """Two servers (not started) with one config: one database (on the test's
    engine), one relay."""
    relay = Relay()
    port = await relay.start()
    db_path = db_target(database_section)
    config = relay_config(tmp_path, port, database=database_section)
    await add_users(db_path, [EMAIL])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Server(config, tmp_path / "a"), Server(config, tmp_path / "b")
    try:
        yield first, second, relay, db_path
    finally:
        await first.kill()
        await second.kill()
        await relay.stop()


@pytest.mark.both_engines
async def test_an_instance_starting_mid_send_does_not_send_that_mail_again(
    two_servers: tuple[Server, Server, Relay, DbTarget],
) -> None:
    first, second, relay, db_path = two_servers
    relay.script = lambda n: SLOW  # every end of data answered after 4 s
    relay.stall_seconds = 4.0
    await first.start()
    assert await request_reset_over_http(first.base_url, EMAIL) == 303

    async def in_data() -> bool:
        return relay.attempts == 1

    await eventually(in_data)
    await second.start()  # while the first still waits for the relay's 250
    await relay.wait_for(1)
    assert await eventually(lambda: _sent_rows(db_path), timeout=10)
    await asyncio.sleep(2.5)  # past the second's next claims: a copy would show
    assert relay.attempts == 1
    assert [r.rcpt_tos for r in relay.received] == [[EMAIL]]
    assert "mid-send" not in second.logs()
    assert await first.terminate() == 0
    assert await second.terminate() == 0


@pytest.mark.both_engines
async def test_a_running_instance_takes_over_the_mail_of_one_killed_mid_send(
    two_servers: tuple[Server, Server, Relay, DbTarget],
) -> None:
    first, second, relay, db_path = two_servers
    relay.script = lambda n: SLOW if n == 1 else ACCEPT
    relay.stall_seconds = 30.0  # the first instance never hears its 250
    await first.start()
    await second.start()
    assert await request_reset_over_http(first.base_url, EMAIL) == 303

    async def in_data() -> bool:
        return relay.attempts == 1

    await eventually(in_data)
    [row] = outbox_rows(db_path)
    assert row["status"] == "pending" and row["claimed_until"] is not None
    # Whichever instance claimed it (on PostgreSQL a notification wakes both)
    # is killed; instance ids are host/pid/random.
    owner_pid = int(str(row["claimed_by"]).split("/")[1])
    holder, survivor = (first, second) if _pid(first) == owner_pid else (second, first)
    assert _pid(holder) == owner_pid
    assert await holder.kill() == -signal.SIGKILL
    # Long before the claim's lease runs out: the owner's process is gone.
    await eventually(lambda: _sent_rows(db_path), timeout=15)
    assert relay.attempts == 2
    assert "took over 1 mail(s) of a stopped instance" in survivor.logs()
    assert await survivor.terminate() == 0


def _pid(server: Server) -> int:
    assert server.proc is not None
    return server.proc.pid


async def _sent_rows(db_path: DbTarget) -> list[dict[str, object]] | None:
    rows = outbox_rows(db_path)
    return rows if rows and all(r["status"] == "sent" for r in rows) else None


async def test_a_send_longer_than_the_lease_keeps_its_claim_by_renewing_it(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = RawRelay(late=2.5)  # the end-of-data reply after 2.5 leases of 1 s
    port = await relay.start()
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        await _queued(db)
        cfg = make_config(mail={"port": port, "retry_base": 0.1, "backoff_cap": 0.2})
        sender = SqliteOutbox(db)
        worker = OutboxWorker(sender, cfg.mail, lambda: ("127.0.0.1", port), lease=1.0)
        await worker.start()
        try:
            other = SqliteOutbox(db)  # another instance, looking all the while
            while relay.ends_of_data == 0:
                await asyncio.sleep(0.05)
            while (await sender.counts())["sent"] == 0:
                await other.release_orphans()
                assert await other.claim_due(10, lease=1.0) == []
                await asyncio.sleep(0.1)
            assert relay.ends_of_data == 1
        finally:
            await worker.stop()
    finally:
        await relay.stop()
        await db.close()


# The rules, on the store.


async def _queued(db: Database, n: int = 1) -> None:
    async with db.transaction() as conn:
        for i in range(n):
            mail = ComposedMail("r@example.test", f"u{i}@example.com", "Hello", b"Subject: Hello")
            await enqueue_mail(conn, "notice", mail)


async def test_start_up_keeps_a_live_instances_claim_and_releases_a_lapsed_one(
    tmp_path: Path,
) -> None:
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        await _queued(db, 2)
        live, lapsed = SqliteOutbox(db), SqliteOutbox(db)
        [kept] = await live.claim_due(1, lease=60)
        [dropped] = await lapsed.claim_due(1, lease=60)
        await db.execute("UPDATE outbox SET claimed_until = 1 WHERE id = ?", (dropped.id,))

        restarted = SqliteOutbox(db)
        assert await restarted.recover() == 1
        assert [m.id for m in await restarted.claim_due(10, lease=60)] == [dropped.id]
        assert await live.renew([kept.id], 60) == 1
        assert await lapsed.mark_sent([dropped]) == [dropped]  # no longer its claim
        assert await restarted.mark_sent([dropped]) == []
        assert await live.mark_sent([kept]) == []
        audit = await db.fetchall("SELECT outcome FROM audit WHERE event = 'mail_sent'")
        assert sorted(r["outcome"] for r in audit) == sorted(
            [f"notice outbox={kept.id}", f"notice outbox={dropped.id}"]
        )
    finally:
        await db.close()


async def test_only_the_owner_of_a_claim_records_a_retry_or_a_failure(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        await _queued(db)
        owner, other = SqliteOutbox(db), SqliteOutbox(db)
        [mail] = await owner.claim_due(1, lease=60)
        assert not await other.schedule_retry(mail.id, 0, "451 not yours")
        assert not await other.mark_failed(mail, "550 not yours", "rejected")
        await other.release([mail.id])
        [row] = await db.fetchall("SELECT status, claimed_by, last_error, attempts FROM outbox")
        assert (row["status"], row["claimed_by"], row["last_error"], row["attempts"]) == (
            "pending",
            owner.owner,
            None,
            1,
        )
        assert not await db.fetchall("SELECT * FROM audit WHERE event = 'mail_failed'")
        assert await owner.mark_failed(mail, "550 no such user", "rejected")
    finally:
        await db.close()


async def test_a_claim_of_a_dead_process_on_this_host_is_released_at_once(
    tmp_path: Path,
) -> None:
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        await _queued(db)
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()  # a pid that is no process now
        dead = SqliteOutbox(db, f"{this_host()}/{proc.pid}/0badcafe")
        elsewhere = SqliteOutbox(db, f"other-host.example/{os.getpid()}/0badcafe")
        await dead.claim_due(1, lease=3600)
        assert await SqliteOutbox(db).release_orphans() == 1
        await elsewhere.claim_due(1, lease=3600)
        assert await SqliteOutbox(db).release_orphans() == 0  # another host: its lease
    finally:
        await db.close()


async def test_a_claim_without_an_owner_lasts_its_lease_as_an_older_resetd_may_hold_it(
    tmp_path: Path,
) -> None:
    """A resetd from before owners were recorded, still running beside a newer
    one during an upgrade, claims without naming itself: its claim must stand
    until its (long) lease runs out, not be released by the newer one's start."""
    db = await Database.open(str(tmp_path / "r.db"))
    try:
        await _queued(db)
        far = time.time() + 1000
        await db.execute("UPDATE outbox SET claimed_until = ?, attempts = 1", (far,))
        newer = SqliteOutbox(db)
        assert await newer.recover() == 0
        assert await newer.claim_due(10, lease=60) == []
        await db.execute("UPDATE outbox SET claimed_until = ?", (time.time() - 1,))
        assert await newer.recover() == 1
        assert len(await newer.claim_due(10, lease=60)) == 1
    finally:
        await db.close()


def test_instance_ids_name_this_host_and_process_and_are_never_dead_to_themselves() -> None:
    me = new_instance_id()
    host, pid, nonce = me.split("/")
    assert (host, int(pid), len(nonce)) == (this_host(), os.getpid(), 8)
    assert host.startswith(socket.gethostname())
    assert not known_dead(me, me)
    assert not known_dead(f"{host}/{pid}/{'0' * 8}", me)  # another app in this process
    assert not known_dead(f"{host}/1/{'0' * 8}", me)  # pid 1 is alive
    assert not known_dead("not an id", me)


async def test_an_owner_with_this_host_name_in_another_pid_namespace_is_never_known_dead() -> None:
    """Containers sharing the host's name (``--network host``) each have their own
    pids: a pid missing here says nothing about a process over there."""
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()
    me = new_instance_id()
    assert known_dead(f"{this_host()}/{proc.pid}/0badcafe", me)
    assert not known_dead(f"{socket.gethostname()}@1/{proc.pid}/0badcafe", me)


async def test_an_owner_killed_but_not_yet_reaped_is_known_dead() -> None:
    """A process killed with SIGKILL stays a zombie until its parent reaps it; it
    runs no code, so its claims need not wait for their lease."""
    # subprocess.Popen, not asyncio's: asyncio's child watcher reaps at once.
    proc = subprocess.Popen(["sleep", "30"])
    try:
        owner = f"{this_host()}/{proc.pid}/0badcafe"
        me = new_instance_id()
        assert not known_dead(owner, me)  # running
        proc.kill()
        await eventually(lambda: _is_zombie(proc.pid))
        assert known_dead(owner, me)  # not reaped yet, and dead all the same
    finally:
        proc.kill()
        proc.wait()


async def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat.rpartition(b")")[2].split()[0] == b"Z"
