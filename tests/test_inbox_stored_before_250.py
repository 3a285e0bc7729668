"""SMTP answers 250 only once the mail is stored: the API finds it right after.

Mailpit stores before it answers, and its clients rely on it: ``mailpit-api``'s
``getMessageSummary()`` right after an awaited ``sendMail`` must return that
mail, not the one before. Real SMTP over loopback into the real app, and the
API read straight after the reply, with no flush or wait in between.
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

from resetd.db import Database
from resetd.inbox import keys as ikeys
from resetd.inbox.events import InboxEvents
from resetd.inbox.ingest import Incoming
from resetd.inbox.parser import ParserProcess
from resetd.inbox.schema import INBOX_MIGRATIONS
from resetd.inbox.store import InboxStore
from resetd.inbox.writer import InboxWriter
from tests.inbox_helpers import api_json, make_message, smtp_address

API = "/dev/inbox/api/v1"


async def test_each_of_40_sequential_sends_is_found_by_the_api_right_after_its_250(
    client: TestClient[Any, Any],
) -> None:
    host, port = smtp_address(client.app)
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10) as smtp:
        for n in range(40):
            marker = f"visible{n:03d}"
            await smtp.send_message(make_message(f"mail {marker}", to=f"u{n}@example.com"))
            latest = await api_json(client, f"{API}/message/latest")
            assert latest["Subject"] == f"mail {marker}", n
            found = await api_json(client, f"{API}/search?query={marker}")
            assert [m["Subject"] for m in found["messages"]] == [f"mail {marker}"], n
            listing = await api_json(client, f"{API}/messages?limit=1")
            assert (
                listing["total"] == n + 1 and listing["messages"][0]["Subject"] == f"mail {marker}"
            )
            page = await (await client.get("/dev/inbox")).text()
            assert marker in page, n


async def test_concurrent_senders_each_find_their_own_mail_after_250(
    client: TestClient[Any, Any],
) -> None:
    """Group commits still: eight connections at once, each reply after its batch's commit."""
    host, port = smtp_address(client.app)

    async def sender(k: int) -> None:
        async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10) as smtp:
            for n in range(10):
                marker = f"c{k}n{n}x"
                await smtp.send_message(make_message(f"mail {marker}"))
                found = await api_json(client, f"{API}/search?query={marker}")
                assert found["messages_count"] == 1, marker

    await asyncio.gather(*(sender(k) for k in range(8)))
    assert (await api_json(client, f"{API}/messages?limit=1"))["total"] == 80


async def test_mail_whose_batch_cannot_be_stored_gets_451_never_250(
    client: TestClient[Any, Any],
) -> None:
    path = client.app[ikeys.writer].store.db.path
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=5)) as db:
        db.execute(
            "CREATE TRIGGER broken BEFORE INSERT ON message_raw "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        host, port = smtp_address(client.app)

        async def send(subject: str) -> aiosmtplib.SMTPResponse:
            async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10) as smtp:
                await smtp.ehlo()
                await smtp.mail("app@example.test")
                await smtp.rcpt("susan@example.com")
                return await smtp.data(make_message(subject).as_bytes())

        # Several at once, so they share batches.
        results = await asyncio.gather(
            *(send(f"refused {n}") for n in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, aiosmtplib.SMTPDataError) and r.code == 451 for r in results)
        db.execute("DROP TRIGGER broken")
    reply = await send("after recovery")
    assert reply.code == 250
    listing = await api_json(client, f"{API}/messages")
    assert [m["Subject"] for m in listing["messages"]] == ["after recovery"]


async def test_a_sender_that_goes_away_does_not_cancel_its_batch_for_the_others(
    tmp_path: Path,
) -> None:
    db = await Database.open(str(tmp_path / "inbox.db"), migrations=INBOX_MIGRATIONS)
    store = InboxStore(db, 100)
    writer = InboxWriter(store, InboxEvents(), ParserProcess(10.0))

    def incoming(subject: str) -> Incoming:
        raw = f"Subject: {subject}\r\n\r\nbody\r\n".encode()
        return Incoming(0.0, "a@example.com", ["b@example.com"], raw)

    try:
        # Not started: both wait in the same batch.
        gone = asyncio.create_task(writer.submit(incoming("gone")))
        stays = asyncio.create_task(writer.submit(incoming("stays")))
        await asyncio.sleep(0.1)
        gone.cancel()  # as aiosmtpd cancels a session whose client went away
        await asyncio.sleep(0.05)
        assert not stays.done()
        await writer.start()
        await asyncio.wait_for(stays, 5)  # answered: stored
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert await store.counts() == (2, 2)
    finally:
        await writer.stop()
        await store.close()
