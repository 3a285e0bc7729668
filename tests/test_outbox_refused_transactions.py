"""A refused transaction leaves nothing behind, against a relay that behaves like
Postfix: it keeps the transaction open after refusing the end of data (where
``smtpd_end_of_data_restrictions``, policy daemons and quotas run), so the next
MAIL gets ``503 nested MAIL command`` while a pipelined RCPT joins the refused
transaction and a pipelined DATA opens it again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from resetd.config import MailConfig
from resetd.db import Database
from resetd.outbox.failures import PermanentFailure, TemporaryFailure
from resetd.outbox.relay import SmtpConnection
from resetd.outbox.worker import OutboxWorker
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import ConfigFactory, eventually
from .raw_relay import OK, RawRelay

pytestmark = pytest.mark.both_engines  # resetd's database: SQLite, then PostgreSQL

SENDER = "no-reply@example.test"
DEFERRED = "451 4.7.1 Service unavailable - try again later"


def mail(to: str) -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: Hi\r\n\r\nhello {to}\r\n".encode()


def out(to: str) -> tuple[str, str, bytes]:
    return SENDER, to, mail(to)


def announce(to: str) -> Callable[[], tuple[str, str, bytes]]:
    return lambda: out(to)


@pytest.fixture(params=[True, False], ids=["pipelining", "one-at-a-time"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    flag: bool = request.param
    return flag


@pytest.fixture
async def postfix(pipelining: bool) -> AsyncIterator[RawRelay]:
    relay = RawRelay(pipelining=pipelining, end_of_data=lambda n: DEFERRED if n == 1 else OK)
    await relay.start()
    yield relay
    await relay.stop()


@pytest.fixture
async def conn(postfix: RawRelay) -> AsyncIterator[SmtpConnection]:
    c = SmtpConnection(
        MailConfig(port=postfix.port, timeout=2.0), lambda: ("127.0.0.1", postfix.port)
    )
    yield c
    await c.close()


def no_empty_mail(relay: RawRelay) -> bool:
    return all(d.data.strip() for d in relay.delivered)


async def test_a_refused_end_of_data_is_reset_before_the_session_carries_another_mail(
    postfix: RawRelay, conn: SmtpConnection
) -> None:
    with pytest.raises(TemporaryFailure, match=f"^{DEFERRED}$"):
        await conn.send(*out("a@x.test"))
    await conn.send(*out("b@x.test"))  # not "503 nested MAIL command"
    assert [d.rcpt_tos for d in postfix.delivered] == [["b@x.test"]]
    first_rset = postfix.commands.index("RSET")
    mails = [i for i, c in enumerate(postfix.commands) if c.startswith("MAIL")]
    assert mails[0] < first_rset < mails[1]
    assert postfix.connections == 1


async def test_a_refused_end_of_data_with_the_next_envelope_ahead_delivers_no_empty_mail(
    postfix: RawRelay, conn: SmtpConnection, pipelining: bool
) -> None:
    with pytest.raises(TemporaryFailure, match=f"^{DEFERRED}$"):
        await conn.send(*out("a@x.test"), then=announce("b@x.test"))
    # b's envelope went behind a's data (with pipelining): it met a's open
    # transaction. The session is closed instead of ending that data.
    refused: Exception | None = None
    try:
        await conn.send(*out("b@x.test"))
    except (PermanentFailure, TemporaryFailure) as exc:
        refused = exc
    assert no_empty_mail(postfix)
    assert refused is None
    assert [d.rcpt_tos for d in postfix.delivered] == [["b@x.test"]]
    assert postfix.connections == (2 if pipelining else 1)


@pytest.mark.parametrize("pipelining", [True], ids=["pipelining"])
async def test_mail_refused_while_data_opens_closes_the_connection_instead_of_an_empty_mail(
    pipelining: bool,
) -> None:
    relay = RawRelay(
        data_whatever=True,
        mail_reply=lambda address: "550 5.7.1 Sender refused" if address == SENDER else None,
    )
    await relay.start()
    conn = SmtpConnection(
        MailConfig(port=relay.port, timeout=2.0), lambda: ("127.0.0.1", relay.port)
    )
    try:
        with pytest.raises(PermanentFailure, match=r"^550 5\.7\.1 Sender refused$"):
            await conn.send(*out("a@x.test"))
        await conn.send("other@example.test", "b@x.test", mail("b@x.test"))
        assert relay.ends_of_data == 1  # only b's: a's opened DATA was never ended
        assert [d.rcpt_tos for d in relay.delivered] == [["b@x.test"]]
        assert relay.connections == 2
    finally:
        await conn.close()
        await relay.stop()


async def test_a_503_is_a_session_out_of_step_retried_on_a_new_session(pipelining: bool) -> None:
    replies = iter(["503 5.5.1 Error: nested MAIL command"])
    relay = RawRelay(pipelining=pipelining, mail_reply=lambda address: next(replies, None))
    await relay.start()
    conn = SmtpConnection(
        MailConfig(port=relay.port, timeout=2.0), lambda: ("127.0.0.1", relay.port)
    )
    try:
        with pytest.raises(TemporaryFailure, match=r"^session out of step: 503 5\.5\.1"):
            await conn.send(*out("a@x.test"))
        await conn.send(*out("a@x.test"))
        assert [d.rcpt_tos for d in relay.delivered] == [["a@x.test"]]
        assert no_empty_mail(relay)
        assert relay.connections == 2
    finally:
        await conn.close()
        await relay.stop()


async def test_worker_behind_a_postfix_that_defers_an_end_of_data_sends_each_mail_once(
    make_config: ConfigFactory, tmp_path: Path, pipelining: bool
) -> None:
    relay = RawRelay(pipelining=pipelining, end_of_data=lambda n: DEFERRED if n == 1 else OK)
    port = await relay.start()
    db = await Database.open(str(tmp_path / "outbox.db"))
    store = SqliteOutbox(db)
    recipients = [f"user{i}@example.com" for i in range(6)]
    now = time.time()
    async with db.transaction() as c:
        await c.executemany(
            "INSERT INTO outbox (kind, sender, recipient, subject, message, created_at,"
            " next_attempt_at) VALUES ('reset', ?, ?, 'Hi', ?, ?, ?)",
            [(SENDER, to, mail(to), now, now) for to in recipients],
        )
    cfg = make_config(
        mail={"port": port, "pool_size": 1, "retry_base": 0.1, "backoff_cap": 0.2, "timeout": 2.0}
    )
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
    await worker.start()
    try:

        async def settled() -> bool:
            return (await store.counts())["pending"] == 0

        await eventually(settled)
        assert await store.counts() == {"pending": 0, "sent": 6, "failed": 0}
        assert sorted(r for d in relay.delivered for r in d.rcpt_tos) == recipients
        assert no_empty_mail(relay)
        [deferred] = [e for e in await store.list(include_sent=True) if e.attempts == 2]
        assert deferred.recipient == "user0@example.com"
    finally:
        await worker.stop()
        await relay.stop()
        await db.close()
