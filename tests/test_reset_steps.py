"""The reset flow's steps are plain objects: each gets what it uses, not the app.

The intake, the processor and the token check run here on a real SQLite file
with nothing but their own dependencies, as they do inside the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from resetd.config import LimitsConfig
from resetd.db import Database
from resetd.reset.compose import MailComposer
from resetd.reset.intake import Intake, Submission
from resetd.reset.processor import RequestProcessor
from resetd.reset.tokens import TokenCodec, TokenInvalid, TokenState, check_token
from resetd.storage.sqlite import SqliteStorage
from resetd.storage.sqlite.outbox import SqliteOutbox
from resetd.storage.sqlite.users import SqliteUsers
from resetd.users import AccountStore, User, fingerprint, normalize

from .helpers import LINK_RE, TEST_SECRET
from .sqlite_rows import consume_token, ledger_of, record_token


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(str(tmp_path / "resetd.db"))
    yield database
    await database.close()


async def test_a_request_becomes_a_queued_mail_with_a_valid_link_without_an_app(
    db: Database,
) -> None:
    users = SqliteUsers(db)
    susan = await users.add("Susan@example.com", "susan", "$argon2id$unused")
    codec = TokenCodec(TEST_SECRET, ttl=600)
    composer = MailComposer("resetd <no-reply@example.test>", "http://localhost:8080")
    woken: list[str] = []
    storage = SqliteStorage(db)
    processor = RequestProcessor(storage, users, codec, composer, lambda: woken.append("outbox"))
    intake = Intake(storage, LimitsConfig(), lambda: woken.append("processor"))
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
    [mail] = await SqliteOutbox(db).claim_due(10, lease=60)
    assert mail.kind == "reset" and mail.recipient == "Susan@example.com"
    parsed = message_from_bytes(mail.message, policy=default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("plain",))
    assert body is not None
    match = LINK_RE.search(body.get_content())
    assert match, "no reset link in the mail"
    user, claims = await check_token(match.group(1), codec, ledger_of(db), users)
    assert user == susan and claims.user_id == susan.id
    assert await processor.process_batch() == 0  # claimed once, never mailed twice


async def _recorded(db: Database, codec: TokenCodec, user: User, now: float) -> str:
    token, claims = codec.mint(user.id, fingerprint(user), now=now)
    async with db.transaction() as conn:
        await record_token(conn, claims)
    return token


async def _state(token: str, codec: TokenCodec, db: Database, users: AccountStore) -> TokenState:
    try:
        await check_token(token, codec, ledger_of(db), users)
    except TokenInvalid as exc:
        return exc.state
    return TokenState.VALID


async def test_the_one_token_check_names_every_state_the_inbox_panel_shows(
    db: Database,
) -> None:
    users = SqliteUsers(db)
    codec = TokenCodec(TEST_SECRET, ttl=600)
    user = await users.add("ann@example.com", "ann", "$argon2id$first")

    valid = await _recorded(db, codec, user, time.time())
    assert await _state(valid, codec, db, users) is TokenState.VALID

    used = await _recorded(db, codec, user, time.time())
    async with db.transaction() as conn:
        assert await consume_token(conn, codec.decode(used).jti, time.time())
    assert await _state(used, codec, db, users) is TokenState.USED

    # Expired and used too: expired, as the reset page says, whatever the ledger holds.
    old = await _recorded(db, codec, user, time.time() - 3600)
    async with db.transaction() as conn:
        await conn.execute("UPDATE reset_tokens SET used_at = 1")
    assert await _state(old, codec, db, users) is TokenState.EXPIRED

    unrecorded, _ = codec.mint(user.id, fingerprint(user))
    assert await _state(unrecorded, codec, db, users) is TokenState.UNKNOWN

    forged = TokenCodec("another-secret-key-0123456789abcdef-0123", ttl=600)
    other, _ = forged.mint(user.id, fingerprint(user))
    assert await _state(other, codec, db, users) is TokenState.INVALID

    fresh = await _recorded(db, codec, user, time.time())
    await users.set_password_hash(user.id, "$argon2id$changed")
    assert await _state(fresh, codec, db, users) is TokenState.SUPERSEDED


async def test_the_queued_request_keeps_its_language_until_the_mail_is_written(
    db: Database,
) -> None:
    users = SqliteUsers(db)
    await users.add("susan@example.com", "susan", "$argon2id$unused")
    await users.add("tom@example.com", "tom", "$argon2id$unused")
    composer = MailComposer("resetd <no-reply@example.test>", "http://localhost:8080")
    codec = TokenCodec(TEST_SECRET, ttl=600)
    storage = SqliteStorage(db)
    processor = RequestProcessor(storage, users, codec, composer, lambda: None)
    intake = Intake(storage, LimitsConfig(), lambda: None)
    await intake.start()
    try:
        spanish = Submission("susan@example.com", "192.0.2.7", "ua", "susan@example.com", "es")
        assert await intake.submit(spanish) is None
    finally:
        await intake.stop()
    # A request queued before the language was stored (schema v7) has none.
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO reset_requests (email_norm, email, client_ip, user_agent, created_at)"
            " VALUES ('tom@example.com', 'tom@example.com', '192.0.2.8', 'ua', ?)",
            (time.time(),),
        )
    assert await processor.process_batch() == 2
    mails = await SqliteOutbox(db).claim_due(10, lease=60)
    subjects = {
        m.recipient: message_from_bytes(m.message, policy=default)["Subject"] for m in mails
    }
    assert subjects == {
        "susan@example.com": "[resetd] Restablece tu contraseña",
        "tom@example.com": "[resetd] Reset Your Password",
    }


class _QueuesAnotherDuringLookup:
    """Accounts whose first lookup queues one more request (and waits for its
    commit) before answering, as a form POST arriving mid-batch would."""

    def __init__(self, users: SqliteUsers, intake: Intake, late: Submission) -> None:
        self.users, self.intake, self.late = users, intake, late
        self.lookups = 0

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]:
        self.lookups += 1
        if self.lookups == 1:
            assert await self.intake.submit(self.late) is None
        return await self.users.find_all_by_email(email_norms)

    def __getattr__(self, name: str) -> object:
        return getattr(self.users, name)


async def test_a_request_queued_while_a_batch_is_processed_does_not_wait_for_the_poll(
    db: Database,
) -> None:
    users = SqliteUsers(db)
    await users.add("susan@example.com", "susan", "$argon2id$unused")
    await users.add("tom@example.com", "tom", "$argon2id$unused")
    storage = SqliteStorage(db)
    composer = MailComposer("resetd <no-reply@example.test>", "http://localhost:8080")
    codec = TokenCodec(TEST_SECRET, ttl=600)
    woken: list[str] = []
    processor_box: list[RequestProcessor] = []
    intake = Intake(storage, LimitsConfig(), lambda: processor_box[0].wake())
    late = Submission("tom@example.com", "192.0.2.8", "ua", "tom@example.com")
    looking = _QueuesAnotherDuringLookup(users, intake, late)
    processor = RequestProcessor(storage, looking, codec, composer, lambda: woken.append("mail"))
    processor_box.append(processor)
    # Only a wake-up can bring the second look within the test's time.
    processor.POLL = 3600.0
    await intake.start()
    try:
        first = Submission("susan@example.com", "192.0.2.7", "ua", "susan@example.com")
        assert await intake.submit(first) is None
        await processor.start()
        try:

            async def both_done() -> None:
                while True:
                    rows = await db.fetchall("SELECT done_at FROM reset_requests")
                    if len(rows) == 2 and all(r[0] is not None for r in rows):
                        return
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(both_done(), timeout=20)
        finally:
            await processor.stop()
    finally:
        await intake.stop()
    assert looking.lookups == 2 and woken == ["mail", "mail"]


async def test_the_processor_stops_when_a_wake_up_lands_just_before_the_stop(
    db: Database,
) -> None:
    """A request queued as the app stops wakes the processor in the same turn as
    the cancel; on Python 3.11 ``asyncio.wait_for`` dropped that cancel and stop()
    waited for ever (seen as a test app that never shut down)."""
    storage = SqliteStorage(db)
    composer = MailComposer("resetd <no-reply@example.test>", "http://localhost:8080")
    processor = RequestProcessor(
        storage, SqliteUsers(db), TokenCodec(TEST_SECRET, ttl=600), composer, lambda: None
    )
    processor.POLL = 3600.0
    await processor.start()
    await asyncio.sleep(0.2)  # idle, waiting for a wake-up
    processor.wake()
    await asyncio.sleep(0)  # the wake-up's waiter is done; the processor not yet resumed
    await asyncio.wait_for(processor.stop(), timeout=5)
