"""A relay that takes its time over the end of data (content scanning does) gets
each mail once: the end-of-data reply is awaited for ``[mail] data_timeout``
(RFC 5321 §4.5.3.2.6), while every other command keeps the short
``[mail] timeout``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from resetd.config import MailConfig
from resetd.db import Database
from resetd.outbox.failures import TemporaryFailure
from resetd.outbox.relay import SmtpConnection
from resetd.outbox.worker import OutboxWorker
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import ConfigFactory, eventually
from .raw_relay import RawRelay

SENDER = "no-reply@example.test"


def mail(to: str) -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: Hi\r\n\r\nhello {to}\r\n".encode()


async def test_a_relay_answering_the_end_of_data_after_12_s_gets_each_mail_once(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    # The mail is queued on the relay as soon as its data ends; the reply comes
    # 12 s later, past the 10 s [mail] timeout that used to apply to it.
    relay = RawRelay(late=12.0)
    port = await relay.start()
    db = await Database.open(str(tmp_path / "outbox.db"))
    store = SqliteOutbox(db)
    recipients = ["a@example.com", "b@example.com", "c@example.com"]
    now = time.time()
    async with db.transaction() as c:
        await c.executemany(
            "INSERT INTO outbox (kind, sender, recipient, subject, message, created_at,"
            " next_attempt_at) VALUES ('reset', ?, ?, 'Hi', ?, ?, ?)",
            [(SENDER, to, mail(to), now, now) for to in recipients],
        )
    cfg = make_config(mail={"port": port, "pool_size": 3, "retry_base": 0.1, "backoff_cap": 0.2})
    assert (cfg.mail.timeout, cfg.mail.data_timeout) == (10.0, 600.0)  # the defaults
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
    await worker.start()
    try:

        async def all_sent() -> bool:
            return (await store.counts())["sent"] == 3

        with contextlib.suppress(AssertionError):  # the copies say more than a timeout
            await eventually(all_sent, timeout=16)
        assert [relay.count_for(to) for to in recipients] == [1, 1, 1]
        assert relay.ends_of_data == 3
        assert await all_sent()
        assert all(e.attempts == 1 for e in await store.list(include_sent=True))
    finally:
        await worker.stop()
        await relay.stop()
        await db.close()


async def test_the_end_of_data_waits_for_data_timeout_and_other_replies_for_timeout() -> None:
    relay = RawRelay(late=1.0)
    await relay.start()
    cfg = MailConfig(port=relay.port, timeout=0.3, data_timeout=5.0)
    conn = SmtpConnection(cfg, lambda: ("127.0.0.1", relay.port))
    try:
        await conn.send(SENDER, "a@example.com", mail("a@example.com"))  # 1 s > timeout
        assert relay.count_for("a@example.com") == 1

        relay.slow_mail = 1.0  # the reply to MAIL comes as late
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match=r"^timeout"):
            await conn.send(SENDER, "b@example.com", mail("b@example.com"))
        assert time.monotonic() - started < 0.9
    finally:
        await conn.close()
        await relay.stop()
