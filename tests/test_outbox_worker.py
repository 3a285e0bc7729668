"""The worker records what each send came to, whatever carries the mail.

``OutboxWorker`` takes its connections as a seam (``connections=``): production
builds ``SmtpConnection``s, and here a connection that sends nothing answers
each recipient as told, so the worker's bookkeeping is seen on its own, on a
real SQLite file. The SMTP side has its own tests against real relays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from resetd.db import Database
from resetd.outbox.failures import PermanentFailure, TemporaryFailure
from resetd.outbox.smtp import NextMail
from resetd.outbox.worker import OutboxWorker
from resetd.reset.compose import ComposedMail
from resetd.storage.sqlite.outbox import SqliteOutbox

from .helpers import ConfigFactory, eventually
from .sqlite_rows import enqueue_mail

FAST = {"retry_base": 0.1, "backoff_cap": 0.3, "timeout": 2.0, "max_age": 3600}


class AnsweringConnection:
    """Has SmtpConnection's methods; raises the failure set for a recipient, if any."""

    def __init__(self, answers: dict[str, Exception]) -> None:
        self.answers = answers
        self.sent: list[str] = []
        self.closed = False

    @property
    def connected(self) -> bool:
        return not self.closed

    async def send(
        self, sender: str, recipient: str, message: bytes, then: NextMail | None = None
    ) -> None:
        self.sent.append(recipient)
        answer = self.answers.get(recipient)
        if answer is not None:
            raise answer

    def abort(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "outbox.db"))
    yield database
    await database.close()


async def queue(db: Database, to: str) -> int:
    data = f"From: no-reply@example.test\r\nTo: {to}\r\nSubject: Hi\r\n\r\nhello\r\n".encode()
    async with db.transaction() as conn:
        mail = ComposedMail("no-reply@example.test", to, "Hi", data)
        return await enqueue_mail(conn, "reset", mail, user_id=7)


async def test_each_answer_of_a_connection_is_recorded_as_sent_failed_or_retried(
    make_config: ConfigFactory, db: Database
) -> None:
    cfg = make_config(mail=FAST).mail
    ids = {to: await queue(db, to) for to in ("ok@example.test", "gone@example.test")}
    ids["later@example.test"] = await queue(db, "later@example.test")
    conn = AnsweringConnection(
        {
            "gone@example.test": PermanentFailure("550 5.1.1 no such user"),
            "later@example.test": TemporaryFailure("451 4.3.0 try again later"),
        }
    )
    worker = OutboxWorker(SqliteOutbox(db), cfg, lambda: ("127.0.0.1", 9), connections=[conn])
    assert worker.connections == [conn]

    async def rows() -> dict[str, dict[str, Any]] | None:
        found = {
            r["recipient"]: dict(r)
            for r in await db.fetchall("SELECT recipient, status, attempts, last_error FROM outbox")
        }
        later = found["later@example.test"]
        settled = found["ok@example.test"]["status"] == "sent" and later["attempts"] >= 2
        return found if settled and found["gone@example.test"]["status"] == "failed" else None

    await worker.start()
    try:
        found = await eventually(rows)
    finally:
        await worker.stop()
    assert conn.closed
    assert found["ok@example.test"]["last_error"] is None
    assert found["gone@example.test"]["last_error"] == "550 5.1.1 no such user"
    assert found["gone@example.test"]["attempts"] == 1  # a 5xx is never tried again
    assert found["later@example.test"]["status"] == "pending"
    assert found["later@example.test"]["last_error"] == "451 4.3.0 try again later"
    assert conn.sent.count("ok@example.test") == 1
    assert conn.sent.count("gone@example.test") == 1
    audit = {
        r["outcome"] for r in await db.fetchall("SELECT outcome FROM audit WHERE user_id = '7'")
    }
    assert audit == {
        f"reset outbox={ids['ok@example.test']}",
        f"reset outbox={ids['gone@example.test']} rejected",
    }
