"""Mail to an internationalised address goes with SMTPUTF8 when the relay offers
it, and fails alone, for good and with a clear reason, when it does not; the
ordinary mail queued around it keeps flowing either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from resetd.config import MailConfig
from resetd.db import Database
from resetd.outbox.failures import PermanentFailure
from resetd.outbox.relay import SmtpConnection
from resetd.outbox.worker import OutboxWorker
from resetd.reset.compose import ComposedMail
from resetd.storage.outbox import OutboxEntry
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import TEST_SECRET, ConfigFactory, eventually
from .processes import run_cli, write_config
from .relays import Relay
from .sqlite_rows import enqueue_mail

SENDER = "no-reply@example.test"
ZOE = "zoë@example.com"
REASON = "relay does not offer SMTPUTF8, needed for recipient …@example.com"


def composed(to: str) -> ComposedMail:
    # UTF-8 in the header, as RFC 6532 allows under SMTPUTF8.
    data = f"From: {SENDER}\r\nTo: {to}\r\nSubject: Hi\r\n\r\nhello\r\n".encode()
    return ComposedMail(SENDER, to, "Hi", data)


@pytest.fixture(params=[True, False], ids=["smtputf8", "no-smtputf8"])
async def relay(request: pytest.FixtureRequest) -> AsyncIterator[Relay]:
    r = Relay(pipelining=True, smtputf8=request.param)
    await r.start()
    yield r
    await r.stop()


async def test_an_internationalised_address_goes_with_smtputf8_or_fails_alone(
    relay: Relay, make_config: ConfigFactory, tmp_path: Path
) -> None:
    db_path = tmp_path / "outbox.db"
    db = await Database.open(str(db_path))
    store = SqliteOutbox(db)
    ordinary = [f"user{i}@example.com" for i in range(20)]
    queue = [*ordinary[:10], ZOE, *ordinary[10:]]
    async with db.transaction() as conn:
        for to in queue:
            await enqueue_mail(conn, "reset", composed(to))
    cfg = make_config(mail={"port": relay.port, "pool_size": 2, "retry_base": 0.1})
    worker = OutboxWorker(store, cfg.mail, lambda: ("127.0.0.1", relay.port))
    await worker.start()
    try:

        async def settled() -> list[OutboxEntry] | None:
            found = await store.list(include_sent=True)
            return found if all(e.status != "pending" for e in found) else None

        entries = {e.recipient: e for e in await eventually(settled)}
        assert [entries[to].status for to in ordinary] == ["sent"] * 20
        assert sorted(r for m in relay.received for r in m.rcpt_tos if r != ZOE) == sorted(ordinary)
        zoe = entries[ZOE]
        if relay.smtputf8:
            assert zoe.status == "sent"
            [got] = [m for m in relay.received if m.rcpt_tos == [ZOE]]
            assert {"SMTPUTF8", "BODY=8BITMIME"} <= set(got.mail_options)
            assert got.data == composed(ZOE).data
            others = [m for m in relay.received if m.rcpt_tos != [ZOE]]
            assert not any("SMTPUTF8" in m.mail_options for m in others)
        else:
            assert (zoe.status, zoe.attempts, zoe.last_error) == ("failed", 1, REASON)
            assert not any(ZOE.encode() in chunk for chunk in relay.chunks)  # never sent

            config = write_config(
                tmp_path / "cli.toml",
                {"server": {"secret_key": TEST_SECRET}, "database": {"path": str(db_path)}},
            )
            code, out, err = await run_cli("outbox", "--config", str(config))
            assert code == 0, err
            assert "0 pending, 1 failed, 20 sent" in out
            assert f"last error: {REASON}" in out
    finally:
        await worker.stop()
        await db.close()


async def test_an_8bit_body_goes_with_8bitmime_and_ascii_mail_with_neither(relay: Relay) -> None:
    conn = SmtpConnection(
        MailConfig(port=relay.port, timeout=2.0), lambda: ("127.0.0.1", relay.port)
    )
    try:
        await conn.send(SENDER, "a@x.test", "Subject: Hi\r\n\r\nZoë\r\n".encode())
        await conn.send(SENDER, "b@x.test", b"Subject: Hi\r\n\r\nplain\r\n")
        eight, plain = relay.received
        assert "BODY=8BITMIME" in eight.mail_options and "SMTPUTF8" not in eight.mail_options
        assert "BODY=8BITMIME" not in plain.mail_options and "SMTPUTF8" not in plain.mail_options
    finally:
        await conn.close()


async def test_a_non_ascii_sender_fails_its_mail_alone_without_smtputf8() -> None:
    relay = Relay(pipelining=True)
    await relay.start()
    conn = SmtpConnection(
        MailConfig(port=relay.port, timeout=2.0), lambda: ("127.0.0.1", relay.port)
    )
    try:
        with pytest.raises(
            PermanentFailure,
            match=r"^relay does not offer SMTPUTF8, needed for sender …@exämple\.test$",
        ):
            await conn.send("nö@exämple.test", "a@x.test", b"Subject: Hi\r\n\r\nhello\r\n")
        await conn.send(SENDER, "a@x.test", b"Subject: Hi\r\n\r\nhello\r\n")
        assert [m.rcpt_tos for m in relay.received] == [["a@x.test"]]
        assert relay.connections == 1
    finally:
        await conn.close()
        await relay.stop()
