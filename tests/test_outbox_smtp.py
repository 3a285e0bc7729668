"""The outbox's SMTP connection against a real relay on real sockets: pipelined
envelopes when the relay offers PIPELINING, one command at a time when it does
not, the same reply rules either way, the transfer encoding of the body, TLS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from resetd.config import Config, MailConfig
from resetd.db import Database
from resetd.outbox.envelope import data_payload
from resetd.outbox.failures import PermanentFailure, TemporaryFailure
from resetd.outbox.relay import SmtpConnection
from resetd.outbox.worker import OutboxWorker
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import ConfigFactory, eventually
from .relays import DROP, STALL, Relay, first_n, self_signed

SENDER = "no-reply@example.test"


def mail(to: str, body: str = "hello") -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: Hi\r\n\r\n{body}\r\n".encode()


def mail_config(port: int, **kw: Any) -> MailConfig:
    return MailConfig(port=port, timeout=kw.pop("timeout", 2.0), **kw)


@pytest.fixture(params=[True, False], ids=["pipelining", "one-at-a-time"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    flag: bool = request.param
    return flag


@pytest.fixture
async def relay(pipelining: bool) -> AsyncIterator[Relay]:
    r = Relay(pipelining=pipelining)
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def conn(relay: Relay) -> AsyncIterator[SmtpConnection]:
    c = SmtpConnection(mail_config(relay.port), lambda: ("127.0.0.1", relay.port))
    yield c
    await c.close()


def test_payload_is_crlf_dot_stuffed_and_terminated() -> None:
    assert data_payload(b"a\r\n.b\r\n") == b"a\r\n..b\r\n.\r\n"
    assert data_payload(b".x\nline\r.\n..y") == b"..x\r\nline\r\n..\r\n...y\r\n.\r\n"
    clean = mail("a@example.com")
    assert data_payload(clean) == clean + b".\r\n"  # already CRLF: unchanged


async def test_envelope_goes_in_one_write_only_when_pipelining_is_offered(
    relay: Relay, conn: SmtpConnection, pipelining: bool
) -> None:
    for i in range(5):
        await conn.send(SENDER, f"user{i}@example.com", mail(f"user{i}@example.com"))
    assert [r.rcpt_tos for r in relay.received] == [[f"user{i}@example.com"] for i in range(5)]
    assert conn.pipelining is pipelining
    assert conn.opened == 1 and relay.connections == 1
    if pipelining:
        assert relay.pipelined_reads() == 5
    else:
        assert relay.pipelined_reads() == 0
        assert relay.envelope_reads() == 10  # MAIL and RCPT each waited for its reply


async def test_body_arrives_exactly_as_composed(relay: Relay, conn: SmtpConnection) -> None:
    body = ".leading dot\r\n..two dots\r\n.\r\nend"
    message = mail("a@example.com", body)
    await conn.send(SENDER, "a@example.com", message)
    [got] = relay.received
    assert got.data == message  # aiosmtpd undoes the dot-stuffing


async def test_bare_line_endings_are_sent_as_crlf(relay: Relay, conn: SmtpConnection) -> None:
    await conn.send(SENDER, "a@example.com", b"Subject: x\n\nline one\rline two\n.\n")
    [got] = relay.received
    assert got.data == b"Subject: x\r\n\r\nline one\r\nline two\r\n.\r\n"


async def test_refused_recipient_is_permanent_and_the_session_goes_on(
    relay: Relay, conn: SmtpConnection
) -> None:
    relay.envelope = lambda cmd, addr: "550 5.1.1 No such user" if addr == "gone@x.test" else None
    with pytest.raises(PermanentFailure, match=r"^550 5\.1\.1 No such user$"):
        await conn.send(SENDER, "gone@x.test", mail("gone@x.test"))
    await conn.send(SENDER, "ok@x.test", mail("ok@x.test"))
    assert [r.rcpt_tos for r in relay.received] == [["ok@x.test"]]
    assert relay.attempts == 1  # DATA never reached the handler for the refused one
    assert relay.connections == 1  # RSET, not a reconnect


async def test_refused_sender_4xx_is_temporary(relay: Relay, conn: SmtpConnection) -> None:
    replies = iter(["451 4.3.0 Sender check unavailable"])
    relay.envelope = lambda cmd, addr: next(replies, None) if cmd == "MAIL" else None
    with pytest.raises(TemporaryFailure, match=r"^451 4\.3\.0 Sender check unavailable$"):
        await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    assert len(relay.received) == 1
    assert relay.connections == 1


async def test_refused_recipient_4xx_is_temporary(relay: Relay, conn: SmtpConnection) -> None:
    relay.envelope = lambda cmd, addr: "450 4.2.1 Mailbox busy" if cmd == "RCPT" else None
    with pytest.raises(TemporaryFailure, match=r"^450 4\.2\.1 Mailbox busy$"):
        await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    assert relay.received == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [("554 5.7.1 Spam", PermanentFailure), ("452 4.3.1 Full", TemporaryFailure)],
)
async def test_end_of_data_reply_decides(
    relay: Relay, conn: SmtpConnection, reply: str, error: type[Exception]
) -> None:
    relay.script = first_n(1, reply)
    with pytest.raises(error, match=f"^{reply}$"):
        await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    assert len(relay.received) == 1
    assert relay.connections == 1


async def test_421_ends_the_session(relay: Relay, conn: SmtpConnection) -> None:
    relay.envelope = lambda cmd, addr: "421 4.3.2 Shutting down" if relay.connections == 1 else None
    with pytest.raises(TemporaryFailure, match=r"^421 "):
        await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    assert relay.connections == 2


async def test_drop_mid_data_is_temporary_and_reconnects(
    relay: Relay, conn: SmtpConnection
) -> None:
    relay.script = first_n(1, DROP)
    with pytest.raises(TemporaryFailure, match=r"^disconnected"):
        await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    await conn.send(SENDER, "a@x.test", mail("a@x.test"))
    assert len(relay.received) == 1
    assert relay.connections == 2


# -- the next envelope behind the data ----------------------------------------------


def out(to: str) -> tuple[str, str, bytes]:
    return SENDER, to, mail(to)


def announce(to: str) -> Callable[[], tuple[str, str, bytes]]:
    """A ``then`` for SmtpConnection.send: the mail that goes next."""
    return lambda: out(to)


def ahead_reads(relay: Relay) -> int:
    """Reads that held one mail's end of data and the next mail's envelope."""
    return sum(b"\r\n.\r\nMAIL FROM:" in c for c in relay.chunks)


def rcpts(relay: Relay) -> list[list[str]]:
    return [r.rcpt_tos for r in relay.received]


async def test_the_next_envelope_rides_behind_the_data_only_when_pipelining(
    relay: Relay, conn: SmtpConnection, pipelining: bool
) -> None:
    to = [f"user{i}@x.test" for i in range(4)]
    for i, addr in enumerate(to):
        await conn.send(*out(addr), then=announce(to[i + 1]) if i + 1 < len(to) else None)
    assert rcpts(relay) == [[a] for a in to]
    assert ahead_reads(relay) == (3 if pipelining else 0)
    assert sum(c.count(b"MAIL FROM:") for c in relay.chunks) == 4  # each envelope once
    assert relay.connections == 1


async def test_the_next_mail_is_asked_for_only_once_an_envelope_is_accepted(
    relay: Relay, conn: SmtpConnection, pipelining: bool
) -> None:
    relay.envelope = lambda cmd, addr: "550 5.1.1 No such user" if addr == "gone@x.test" else None
    asked: list[str] = []

    def then() -> tuple[str, str, bytes]:
        asked.append("b@x.test")
        return out("b@x.test")

    with pytest.raises(PermanentFailure):
        await conn.send(*out("gone@x.test"), then=then)
    assert asked == []  # nothing held back for a mail that never got to its data
    await conn.send(*out("a@x.test"), then=then)
    assert asked == (["b@x.test"] if pipelining else [])
    await conn.send(*out("b@x.test"))
    assert rcpts(relay) == [["a@x.test"], ["b@x.test"]]


async def test_an_envelope_refused_ahead_fails_only_its_own_mail(
    relay: Relay, conn: SmtpConnection
) -> None:
    relay.envelope = lambda cmd, addr: "550 5.1.1 No such user" if addr == "gone@x.test" else None
    await conn.send(*out("a@x.test"), then=announce("gone@x.test"))
    with pytest.raises(PermanentFailure, match=r"^550 5\.1\.1 No such user$"):
        await conn.send(*out("gone@x.test"), then=announce("b@x.test"))
    await conn.send(*out("b@x.test"))
    assert rcpts(relay) == [["a@x.test"], ["b@x.test"]]
    assert relay.connections == 1


async def test_data_refused_with_an_envelope_ahead_leaves_the_next_mail_unharmed(
    relay: Relay, conn: SmtpConnection, pipelining: bool
) -> None:
    relay.script = first_n(1, "554 5.7.1 Spam")
    with pytest.raises(PermanentFailure, match=r"^554 5\.7\.1 Spam$"):
        await conn.send(*out("a@x.test"), then=announce("b@x.test"))
    await conn.send(*out("b@x.test"))
    assert rcpts(relay) == [["b@x.test"]]
    # Without an envelope ahead the session is reset (RSET) and reused; with one,
    # the relay may have read it into the refused transaction: a new session.
    assert relay.connections == (2 if pipelining else 1)
    assert sum(c.count(b"RSET\r\n") for c in relay.chunks) == (0 if pipelining else 1)


async def test_a_drop_at_the_end_of_data_loses_the_envelope_ahead_not_its_mail(
    relay: Relay, conn: SmtpConnection
) -> None:
    relay.script = first_n(1, DROP)
    with pytest.raises(TemporaryFailure, match=r"^disconnected"):
        await conn.send(*out("a@x.test"), then=announce("b@x.test"))
    await conn.send(*out("b@x.test"))
    assert rcpts(relay) == [["b@x.test"]]
    assert relay.connections == 2


async def test_a_421_at_the_end_of_data_ends_the_session_before_the_mail_ahead(
    relay: Relay, conn: SmtpConnection
) -> None:
    relay.script = first_n(1, "421 4.3.2 Closing")
    with pytest.raises(TemporaryFailure, match=r"^421 "):
        await conn.send(*out("a@x.test"), then=announce("b@x.test"))
    await conn.send(*out("b@x.test"))
    assert rcpts(relay) == [["b@x.test"]]
    assert relay.connections == 2  # not on the session the relay said it was closing


async def test_sending_another_mail_than_the_one_announced_starts_a_new_session(
    relay: Relay, conn: SmtpConnection, pipelining: bool
) -> None:
    await conn.send(*out("a@x.test"), then=announce("b@x.test"))
    await conn.send(*out("c@x.test"))
    await conn.close()
    # b's envelope was abandoned with its session: no empty or mixed-up mail.
    assert rcpts(relay) == [["a@x.test"], ["c@x.test"]]
    assert relay.connections == (2 if pipelining else 1)


async def test_closing_with_an_envelope_ahead_sends_no_quit_into_the_data(
    relay: Relay, conn: SmtpConnection, pipelining: bool
) -> None:
    await conn.send(*out("a@x.test"), then=announce("b@x.test"))
    await conn.close()
    await conn.send(*out("c@x.test"))
    await conn.close()
    assert rcpts(relay) == [["a@x.test"], ["c@x.test"]]
    quits = sum(c.count(b"QUIT\r\n") for c in relay.chunks)
    assert quits == (1 if pipelining else 2)


async def test_stalled_reply_times_out(relay: Relay) -> None:
    relay.script, relay.stall_seconds = first_n(1, STALL), 5.0
    cfg = mail_config(relay.port, timeout=0.5, data_timeout=0.5)
    conn = SmtpConnection(cfg, lambda: ("127.0.0.1", relay.port))
    try:
        started = time.monotonic()
        with pytest.raises(TemporaryFailure, match=r"^timeout"):
            await conn.send(SENDER, "a@x.test", mail("a@x.test"))
        assert time.monotonic() - started < 2.0
        await conn.send(SENDER, "b@x.test", mail("b@x.test"))  # on a fresh connection
        assert relay.count_for("b@x.test") == 1
        assert relay.connections == 2
    finally:
        await conn.close()


async def test_address_that_could_inject_commands_is_never_sent(
    relay: Relay, conn: SmtpConnection
) -> None:
    for bad in ("a@x.test>\r\nRCPT TO:<b@x.test", "a b@x.test", ""):
        with pytest.raises(PermanentFailure, match="unsendable address"):
            await conn.send(SENDER, bad, mail("a@x.test"))
    await conn.send(SENDER, "ok@x.test", mail("ok@x.test"))
    assert [r.rcpt_tos for r in relay.received] == [["ok@x.test"]]


async def test_non_ascii_address_needs_smtputf8(pipelining: bool) -> None:
    plain, utf8 = Relay(pipelining=pipelining), Relay(pipelining=pipelining, smtputf8=True)
    for r in (plain, utf8):
        await r.start()
    try:
        to = "zoë@example.com"
        conn = SmtpConnection(mail_config(plain.port), lambda: ("127.0.0.1", plain.port))
        with pytest.raises(
            PermanentFailure,
            match=r"^relay does not offer SMTPUTF8, needed for recipient …@example\.com$",
        ):
            await conn.send(SENDER, to, mail("zoe@example.com"))
        await conn.close()
        conn = SmtpConnection(mail_config(utf8.port), lambda: ("127.0.0.1", utf8.port))
        await conn.send(SENDER, to, mail("zoe@example.com"))
        await conn.close()
        assert utf8.received[0].rcpt_tos == [to]
    finally:
        for r in (plain, utf8):
            await r.stop()


async def test_relay_that_cannot_be_reached_is_temporary() -> None:
    from .relays import free_port

    port = free_port()
    conn = SmtpConnection(mail_config(port), lambda: ("127.0.0.1", port))
    with pytest.raises(TemporaryFailure):
        await conn.send(SENDER, "a@x.test", mail("a@x.test"))


# --- TLS: the session is handed over after aiosmtplib's handshake ------------------


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
async def test_mail_goes_over_tls_and_the_connection_is_reused(
    tmp_path: Path, implicit: bool
) -> None:
    ctx, cert = self_signed(tmp_path)
    relay = Relay(pipelining=True, tls_context=ctx, implicit_tls=implicit)
    await relay.start()
    cfg = mail_config(relay.port, use_tls=not implicit, use_ssl=implicit, ca_file=str(cert))
    conn = SmtpConnection(cfg, lambda: ("127.0.0.1", relay.port))
    try:
        for i in range(3):
            await conn.send(SENDER, f"u{i}@x.test", mail(f"u{i}@x.test"))
        relay.envelope = lambda cmd, addr: "550 5.1.1 No" if addr == "gone@x.test" else None
        with pytest.raises(PermanentFailure):
            await conn.send(SENDER, "gone@x.test", mail("gone@x.test"))
        await conn.send(SENDER, "u3@x.test", mail("u3@x.test"))
        assert len(relay.received) == 4
        assert conn.opened == 1
        assert conn.pipelining
        assert all(r.encrypted for r in relay.received)
    finally:
        await conn.close()
        await relay.stop()


# --- the worker over a pipelining relay ---------------------------------------------


async def enqueue(db: Database, recipients: list[str]) -> None:
    now = time.time()
    async with db.transaction() as c:
        await c.executemany(
            "INSERT INTO outbox (kind, sender, recipient, subject, message, created_at,"
            " next_attempt_at) VALUES ('reset', ?, ?, 'Hi', ?, ?, ?)",
            [(SENDER, to, mail(to), now, now) for to in recipients],
        )


async def test_worker_delivers_a_burst_once_each_with_refusals_and_drops(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = Relay(
        pipelining=True,
        script=lambda n: DROP if n % 97 == 0 else "250 OK",
        envelope=lambda cmd, addr: "550 5.1.1 No" if addr.startswith("gone") else None,
    )
    port = await relay.start()
    db = await Database.open(str(tmp_path / "outbox.db"))
    cfg: Config = make_config(
        mail={"port": port, "pool_size": 4, "retry_base": 0.1, "backoff_cap": 0.2}
    )
    store = SqliteOutbox(db)
    good = [f"user{i}@example.com" for i in range(400)]
    gone = [f"gone{i}@example.com" for i in range(10)]
    await enqueue(db, good[:200] + gone + good[200:])
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
    await worker.start()
    try:

        async def settled() -> bool:
            return (await store.counts())["pending"] == 0

        await eventually(settled, timeout=40)
        await asyncio.sleep(0.3)
        assert await store.counts() == {"pending": 0, "sent": 400, "failed": 10}
        assert sorted(r for m in relay.received for r in m.rcpt_tos) == sorted(good)
        assert relay.max_open <= 4
        assert relay.pipelined_reads() >= 400
        assert ahead_reads(relay) > 0  # senders with mail waiting took the next one
    finally:
        await worker.stop()
        await relay.stop()
        await db.close()


async def test_a_trickle_of_mail_keeps_to_one_warm_connection_and_a_burst_opens_more(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    relay = Relay(pipelining=True)
    port = await relay.start()
    db = await Database.open(str(tmp_path / "outbox.db"))
    cfg: Config = make_config(mail={"port": port, "pool_size": 4})
    store = SqliteOutbox(db)
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", port))
    await worker.start()
    try:
        for i in range(6):
            await enqueue(db, [f"one{i}@example.com"])
            worker.wake()

            async def sent(n: int = i + 1) -> bool:
                return (await store.counts())["sent"] == n

            await eventually(sent)
        # Each mail went to the sender that had just finished: one session, reused.
        assert relay.connections == 1

        await enqueue(db, [f"burst{i}@example.com" for i in range(200)])
        worker.wake()

        async def all_sent() -> bool:
            return (await store.counts())["sent"] == 206

        await eventually(all_sent, timeout=30)
        assert relay.max_open == 4
    finally:
        await worker.stop()
        await relay.stop()
        await db.close()
