"""The reset flow's steps are plain objects: each gets what it uses, not the app.

The intake and the processor run here on a real SQLite file with nothing but
their own dependencies, as they do inside the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from resetd.config import LimitsConfig
from resetd.db import Database
from resetd.limits import RateLimiter
from resetd.outbox.store import OutboxStore
from resetd.reset.compose import MailComposer
from resetd.reset.intake import Intake, Submission
from resetd.reset.processor import RequestProcessor
from resetd.reset.tokens import TokenCodec, TokenLedger, TokenState
from resetd.users import UserStore, fingerprint, normalize

from .conftest import LINK_RE, TEST_SECRET


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "resetd.db"))
    yield database
    await database.close()


async def test_a_request_becomes_a_queued_mail_with_a_valid_link_without_an_app(
    db: Database,
) -> None:
    users = UserStore(db)
    susan = await users.add("Susan@example.com", "susan", "$argon2id$unused")
    codec = TokenCodec(TEST_SECRET, ttl=600)
    composer = MailComposer("resetd <no-reply@example.test>", "http://localhost:8080")
    woken: list[str] = []
    processor = RequestProcessor(
        db, users, codec, composer, RateLimiter(db), lambda: woken.append("outbox")
    )
    intake = Intake(db.writer, LimitsConfig(), lambda: woken.append("processor"))
    await intake.start()
    try:
        typed = " Susan@example.com "
        submission = Submission(normalize(typed), "192.0.2.7", "test-agent", typed.strip())
        assert await intake.submit(submission) is None
    finally:
        await intake.stop()
    assert woken == ["processor"]

    assert await processor.process_batch() == 1
    assert woken == ["processor", "outbox"]
    [mail] = await OutboxStore(db).claim_due(10, lease=60)
    assert mail.kind == "reset" and mail.recipient == "Susan@example.com"
    parsed = message_from_bytes(mail.message, policy=default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("plain",))
    assert body is not None
    match = LINK_RE.search(body.get_content())
    assert match, "no reset link in the mail"
    claims = codec.decode(match.group(1))
    assert claims.user_id == susan.id and claims.fingerprint == fingerprint(susan)
    assert await TokenLedger(db).state(claims.jti) is TokenState.VALID
    assert await processor.process_batch() == 0  # claimed once, never mailed twice
