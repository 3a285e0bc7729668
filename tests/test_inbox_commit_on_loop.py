"""Small batches of captured mail commit on the event loop; the loop never waits.

A batch of a few ordinary mails is committed on the loop's own connection
(a hand-off to the writer thread cost each sender more than the commit).
That connection never waits for a lock and never copies the WAL back: with
another connection writing, the batch goes to the thread, and the loop serves
everyone meanwhile; the WAL is checkpointed from the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient

from resetd.inbox import keys as ikeys
from resetd.inbox import writer as inbox_writer

from .helpers import eventually
from .inbox_helpers import api_json, make_message, smtp_address

API = "/dev/inbox/api/v1"


async def test_mail_waits_for_a_lock_held_elsewhere_in_the_thread_while_the_loop_serves(
    client: TestClient[Any, Any],
) -> None:
    path = client.app[ikeys.writer].store.db.path
    host, port = smtp_address(client.app)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=5)) as other:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        sending = asyncio.create_task(
            aiosmtplib.send(make_message("behind a lock"), hostname=host, port=port, timeout=10)
        )
        await asyncio.sleep(0.3)  # the mail is in, waiting for its batch's commit
        assert not sending.done()
        # The loop is free: pages and the API answer while the lock is held.
        assert (await client.get("/healthz")).status == 200
        assert (await api_json(client, f"{API}/messages"))["total"] == 0
        assert not sending.done()
        other.execute("COMMIT")
    refused, reply = await asyncio.wait_for(sending, 10)
    assert refused == {} and "captured" in reply  # 250 once committed
    listing = await api_json(client, f"{API}/messages")
    assert [m["Subject"] for m in listing["messages"]] == ["behind a lock"]


@pytest.mark.parametrize("checkpoint_bytes", [1, 1 << 40])
async def test_what_the_loop_commits_is_checkpointed_from_the_thread(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch, checkpoint_bytes: int
) -> None:
    """The database file grows only when the WAL is copied back into it: with a
    checkpoint after every commit it does, with none due it stays as it was."""
    monkeypatch.setattr(inbox_writer, "CHECKPOINT_BYTES", checkpoint_bytes)
    path = Path(client.app[ikeys.writer].store.db.path)
    before = path.stat().st_size
    host, port = smtp_address(client.app)
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10) as smtp:
        for n in range(20):
            await smtp.send_message(make_message(f"mail {n}", to=f"u{n}@example.com"))

    async def grown() -> bool:
        return path.stat().st_size > before + 20 * 1024

    if checkpoint_bytes == 1:
        assert await eventually(grown)
    else:
        await asyncio.sleep(0.3)
        assert not await grown()
    assert (await api_json(client, f"{API}/messages?limit=1"))["total"] == 20
