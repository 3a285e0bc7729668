"""Two resetd instances on one database, as behind a load balancer: every request
is mailed exactly once, whichever instance took it and whichever processed it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from resetd import keys
from resetd.app import create_app

from .db_rows import db_rows
from .helpers import ConfigFactory, add_user, eventually, request_reset
from .processes import Server, db_target, relay_config, request_reset_over_http
from .relays import Relay
from .test_lifecycle import add_users

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL


async def test_two_instances_on_one_database_mail_each_request_once(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, mail={"port": relay.port})
    first = await aiohttp_client(create_app(cfg))
    second = await aiohttp_client(create_app(cfg))
    emails = [f"user{n}@example.com" for n in range(40)]
    for n, email in enumerate(emails):
        await add_user(first.app, f"user{n}", email)
    # One request each first, so each client has its session (and CSRF token).
    clients = [first, second]
    for n, email in enumerate(emails[:2]):
        assert (await request_reset(clients[n % 2], email)).status == 303
    answers = await asyncio.gather(
        *(request_reset(clients[n % 2], email) for n, email in enumerate(emails[2:]))
    )
    assert {r.status for r in answers} == {303}

    await relay.wait_for(len(emails))
    await asyncio.sleep(0.5)  # time for a duplicate to show up, if there were one
    assert sorted(r for m in relay.received for r in m.rcpt_tos) == sorted(emails)

    async def all_sent() -> bool:
        counts = await first.app[keys.outbox_store].counts()
        return counts == {"pending": 0, "failed": 0, "sent": len(emails)}

    assert await eventually(all_sent)
    rows = await db_rows(first.app).fetchall(
        "SELECT COUNT(*) AS n FROM audit WHERE event = 'reset_requested'"
    )
    assert rows[0]["n"] == len(emails)


async def test_a_burst_is_mailed_whole_when_one_of_two_serve_processes_is_killed_midway(
    tmp_path: Path, database_section: dict[str, Any], relay: Relay
) -> None:
    """``kill -9`` of one ``resetd serve`` while requests keep coming, spread
    over both as a load balancer would (then all to the survivor): every
    request that got its 303 is mailed, whichever instance took it."""
    target = db_target(database_section)
    emails = [f"burst{n}@example.com" for n in range(30)]
    await add_users(target, emails)
    config = relay_config(tmp_path, relay.port, database=database_section)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    doomed, survivor = Server(config, tmp_path / "a"), Server(config, tmp_path / "b")
    try:
        await doomed.start()
        await survivor.start()
        answered: list[str] = []
        for n, email in enumerate(emails):
            if n == len(emails) // 3:
                assert await doomed.kill() == -signal.SIGKILL
            alive = survivor if n >= len(emails) // 3 or n % 2 else doomed
            assert await request_reset_over_http(alive.base_url, email) == 303
            answered.append(email)
        await relay.wait_for(len(answered), timeout=30)
        mailed = {r for m in relay.received for r in m.rcpt_tos}
        assert mailed == set(answered)
        assert await survivor.terminate() == 0
    finally:
        await doomed.kill()
        await survivor.kill()
