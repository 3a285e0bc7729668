"""Every store behaves the same on SQLite and on PostgreSQL: each test runs on
both (tests/storage_engines.py), through the :class:`~resetd.storage.Storage`
interface alone. What only PostgreSQL must prove (several instances at once,
its clock, its migrations) is in tests/test_pg_storage.py."""

from __future__ import annotations

import pytest

from resetd.passwords import hash_kind
from resetd.storage import Batch, Storage
from resetd.storage.accounts import DuplicateUser
from resetd.storage.ledger import IssuedToken
from resetd.storage.limits import Hit, Taken, window_start
from resetd.storage.sessions import Ended

ARGON = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$ZGlnZXN0"
ARGON_2 = "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXI$b3RoZXI"
BCRYPT = "$2b$12$abcdefghijklmnopqrstuuJ7a0yvSwu8G9c9k5J7eQqQ5v1mQ2W3u"
WERKZEUG = "pbkdf2:sha256:600000$salt$digest"


async def _record_tokens(storage: Storage, *tokens: IssuedToken) -> None:
    def record(b: Batch) -> None:
        b.ledger.record_many(tokens)

    await storage.batch(record)


async def _token(storage: Storage, jti: str, ttl: int = 3600) -> IssuedToken:
    now = int(await storage.now())
    token = IssuedToken(jti, 1, now, now + ttl)
    await _record_tokens(storage, token)
    return token


# Accounts: resetd's own users table.


async def test_an_added_user_is_found_by_id_email_and_either_login(storage: Storage) -> None:
    user = await storage.users.add("Ann@Example.com", " ann ", ARGON)
    assert user.username == "ann"
    assert await storage.accounts.get(user.id) == user
    assert await storage.accounts.find_by_email("ann@example.com") == user
    assert await storage.accounts.find_by_login("ANN") == user
    assert await storage.accounts.find_by_login("ann@example.com") == user
    assert await storage.accounts.find_by_login("nobody") is None
    assert await storage.accounts.get(user.id + 1000) is None
    assert await storage.users.list() == [user]


async def test_find_all_by_email_returns_only_the_addresses_with_an_account(
    storage: Storage,
) -> None:
    ann = await storage.users.add("ann@example.com", "ann", ARGON)
    bob = await storage.users.add("bob@example.com", "bob", ARGON)
    found = await storage.accounts.find_all_by_email(
        ["ann@example.com", "bob@example.com", "eve@example.com"]
    )
    assert found == {"ann@example.com": [ann], "bob@example.com": [bob]}
    assert await storage.accounts.find_all_by_email([]) == {}


async def test_a_login_matching_one_users_name_and_anothers_email_prefers_the_name(
    storage: Storage,
) -> None:
    await storage.users.add("carol@example.com", "dave@example.com", ARGON)
    dave = await storage.users.add("dave@example.com", "dave", ARGON)
    found = await storage.accounts.find_by_login("dave@example.com")
    assert found is not None and found.id != dave.id


async def test_a_taken_email_or_username_is_refused_naming_which(storage: Storage) -> None:
    await storage.users.add("ann@example.com", "ann", ARGON)
    with pytest.raises(DuplicateUser, match="email"):
        await storage.users.add("ANN@example.com", "other", ARGON)
    with pytest.raises(DuplicateUser, match="username"):
        await storage.users.add("other@example.com", "Ann", ARGON)
    with pytest.raises(ValueError, match="username"):
        await storage.users.add("blank@example.com", "   ", ARGON)
    assert len(await storage.users.list()) == 1


async def test_a_hash_is_replaced_only_while_it_is_still_the_old_one(storage: Storage) -> None:
    user = await storage.users.add("ann@example.com", "ann", ARGON)
    assert await storage.accounts.replace_password_hash(user.id, ARGON, ARGON_2)
    assert not await storage.accounts.replace_password_hash(user.id, ARGON, WERKZEUG)
    assert not await storage.accounts.upgrade_hash(user.id, ARGON, WERKZEUG)
    assert await storage.accounts.upgrade_hash(user.id, ARGON_2, BCRYPT)
    await storage.users.set_password_hash(user.id, WERKZEUG)
    stored = await storage.accounts.get(user.id)
    assert stored is not None and stored.password_hash == WERKZEUG


async def test_hash_samples_hold_one_hash_of_each_kind(storage: Storage) -> None:
    for n, stored in enumerate((ARGON, ARGON_2, BCRYPT, WERKZEUG, WERKZEUG + "2")):
        await storage.users.add(f"u{n}@example.com", f"u{n}", stored)
    samples = await storage.accounts.hash_samples(hash_kind)
    assert sorted(map(hash_kind, samples)) == sorted(
        {hash_kind(h) for h in (ARGON, BCRYPT, WERKZEUG)}
    )
    assert len(await storage.accounts.hash_samples(hash_kind, limit=2)) == 2


# Sessions.


async def test_a_session_is_created_touched_forward_only_and_deleted(storage: Storage) -> None:
    await storage.sessions.create("s1", "7", True, 1000.0, None)
    row = await storage.sessions.get("s1")
    assert row is not None and row.user_id == "7" and row.remember is True
    await storage.sessions.touch("s1", 1500.0)
    await storage.sessions.touch("s1", 1200.0)
    row = await storage.sessions.get("s1")
    assert row is not None and (row.created_at, row.last_seen) == (1000.0, 1500.0)
    await storage.sessions.delete("s1")
    assert await storage.sessions.get("s1") is None


async def test_creating_a_session_purges_the_ended_ones(storage: Storage) -> None:
    await storage.sessions.create("idle", "1", False, 100.0, None)
    await storage.sessions.create("kept", "1", True, 100.0, None)
    # Plain sessions idle since 150 have ended; remembered ones only before 50.
    await storage.sessions.create("new", "2", False, 1000.0, Ended(150.0, 0.0, 50.0, 0.0))
    assert await storage.sessions.get("idle") is None
    assert await storage.sessions.get("kept") is not None
    assert await storage.sessions.get("new") is not None


# The token ledger.


async def test_a_recorded_token_is_consumed_once(storage: Storage) -> None:
    token = await _token(storage, "jti-1")
    entry = await storage.ledger.entry("jti-1")
    assert entry is not None and entry.used_at is None and entry.expires_at == token.expires_at
    async with storage.transaction() as tx:
        assert await tx.ledger.consume("jti-1", tx.now)
    async with storage.transaction() as tx:
        assert not await tx.ledger.consume("jti-1", tx.now)
        assert not await tx.ledger.consume("never-recorded", tx.now)
    entry = await storage.ledger.entry("jti-1")
    assert entry is not None and entry.used_at is not None
    assert await storage.ledger.entry("never-recorded") is None


async def test_an_expired_token_is_not_consumed(storage: Storage) -> None:
    now = int(await storage.now())
    await _record_tokens(storage, IssuedToken("old", 1, now - 7200, now - 3600))
    async with storage.transaction() as tx:
        assert not await tx.ledger.consume("old", tx.now)


async def test_a_token_burns_at_the_failure_limit_and_then_is_not_consumed(
    storage: Storage,
) -> None:
    await _token(storage, "jti-2")
    now = await storage.now()
    assert not await storage.ledger.record_failure("jti-2", 3, now)
    assert not await storage.ledger.record_failure("jti-2", 3, now)
    assert await storage.ledger.record_failure("jti-2", 3, now)
    assert not await storage.ledger.record_failure("jti-2", 3, now)  # burned already
    entry = await storage.ledger.entry("jti-2")
    assert entry is not None and entry.burned_at == now
    async with storage.transaction() as tx:
        assert not await tx.ledger.consume("jti-2", tx.now)


# Rate limits.


async def test_take_counts_until_a_bucket_is_full_then_refuses_counting_nowhere(
    storage: Storage,
) -> None:
    hits = [Hit("ip:1", 2, 3600), Hit("global", 100, 3600)]
    first = await storage.limits.take(hits)
    assert isinstance(first, Taken) and first.counts == [1, 1] and first.filled == [False, False]
    second = await storage.limits.take(hits)
    assert isinstance(second, Taken) and second.counts == [2, 2] and second.filled == [True, False]
    refused = await storage.limits.take(hits)
    assert isinstance(refused, int) and 1 <= refused <= 3600
    # The refusal counted nowhere: the global bucket is at 2, not 3.
    other = await storage.limits.take([Hit("global", 100, 3600)])
    assert isinstance(other, Taken) and other.counts == [3]


async def test_a_hit_given_back_frees_its_place(storage: Storage) -> None:
    hits = [Hit("acct:ann", 1, 3600)]
    taken = await storage.limits.take(hits)
    assert isinstance(taken, Taken)
    assert isinstance(await storage.limits.take(hits), int)
    await storage.limits.give_back(taken.counted)
    await storage.limits.give_back(taken.counted)  # never below zero
    again = await storage.limits.take(hits)
    assert isinstance(again, Taken) and again.counts == [1]


async def test_one_bucket_twice_in_a_take_counts_twice(storage: Storage) -> None:
    taken = await storage.limits.take([Hit("b", 5, 60), Hit("b", 5, 60)])
    assert isinstance(taken, Taken) and taken.counts == [1, 2]
    assert len(taken.counted) == 2


async def test_hit_many_counts_every_hit_and_says_which_are_over(storage: Storage) -> None:
    def hit(b: Batch, hits: list[Hit]) -> tuple[float, list[int | None]]:
        return b.now, b.limits.hit_many(hits)

    hits = [Hit("x", 2, 60), Hit("y", 1, 60), Hit("x", 2, 60), Hit("x", 2, 60)]
    now, verdicts = await storage.batch(hit, hits)
    assert verdicts[:3] == [None, None, None]
    end = window_start(now, 60) + 60
    assert verdicts[3] is not None and verdicts[3] == max(1, int(end - now + 0.999))
    _, more = await storage.batch(hit, [Hit("y", 1, 60)])
    assert more[0] is not None  # counted even when over
    _, none = await storage.batch(hit, [])
    assert none == []


async def test_forget_drops_every_window_of_the_buckets(storage: Storage) -> None:
    await storage.limits.take([Hit("acct:ann", 1, 60), Hit("acct:bob", 1, 60)])
    async with storage.transaction() as tx:
        await tx.limits.forget(["acct:ann"])
        await tx.limits.forget([])
    assert isinstance(await storage.limits.take([Hit("acct:ann", 1, 60)]), Taken)
    assert isinstance(await storage.limits.take([Hit("acct:bob", 1, 60)]), int)


async def test_purge_drops_windows_two_days_old(storage: Storage) -> None:
    await storage.limits.take([Hit("b", 5, 60)])
    now = await storage.now()
    assert await storage.limits.purge(now) == 0
    assert await storage.limits.purge(now + 3 * 86400) == 1


# The audit trail and retention.


async def test_audit_rows_come_back_newest_first_with_the_agent_cut(storage: Storage) -> None:
    await storage.audit.add("sign_in", "success", user_id=7, client_ip="192.0.2.1")

    def record(b: Batch) -> None:
        b.audit.record_many([("reset_requested", "queued", None, "192.0.2.2", "x" * 400)])

    await storage.batch(record)
    async with storage.transaction() as tx:
        await tx.audit.record("password_reset", "success", user_id="8", user_agent="ua")
    rows = await storage.audit.recent()
    assert [r.event for r in rows] == ["password_reset", "reset_requested", "sign_in"]
    assert rows[0].user_id == "8" and rows[0].user_agent == "ua"
    assert rows[1].user_agent == "x" * 300 and rows[1].client_ip == "192.0.2.2"
    assert rows[2].user_id == "7" and rows[2].user_agent == ""
    assert [r.event for r in await storage.audit.recent(limit=1)] == ["password_reset"]


async def test_retention_prunes_old_audit_rows_and_expired_tokens_a_batch_at_a_time(
    storage: Storage,
) -> None:
    for n in range(3):
        await storage.audit.add("sign_in", f"n{n}")
    now = await storage.now()
    await _record_tokens(
        storage,
        IssuedToken("dead-1", 1, int(now) - 100, int(now) - 50),
        IssuedToken("dead-2", 1, int(now) - 100, int(now) - 50),
        IssuedToken("live", 1, int(now), int(now) + 3600),
    )
    assert await storage.retention.prune("audit", now + 10, 2) == 2
    assert await storage.retention.prune("audit", now + 10, 2) == 1
    assert await storage.retention.prune("reset_tokens", now, 10) == 2
    assert await storage.ledger.entry("live") is not None
    assert await storage.retention.prune("outbox", now, 10) == 0


# Units of work.


async def _password_change(storage: Storage, user_id: int, old: str, new: str) -> bool:
    """The password change's storage steps, as resetd.reset.confirm makes them."""
    async with storage.transaction() as tx:
        if not await tx.ledger.consume("jti-pw", tx.now):
            return False
        if not await tx.accounts.replace_password_hash(user_id, old, new):
            raise RuntimeError("stale")
        await tx.sessions.end_all(user_id)
        await tx.limits.forget(["acct:ann"])
        await tx.audit.record("password_reset", "success", user_id=user_id)
        if new == "refuse":
            raise RuntimeError("refused after every step")
    return True


async def test_the_password_change_rolls_back_whole_and_then_commits_whole(
    storage: Storage,
) -> None:
    user = await storage.users.add("ann@example.com", "ann", ARGON)
    await _token(storage, "jti-pw")
    await storage.sessions.create("s1", str(user.id), False, await storage.now(), None)
    await storage.limits.take([Hit("acct:ann", 1, 60)])

    with pytest.raises(RuntimeError, match="refused"):
        await _password_change(storage, user.id, ARGON, "refuse")
    entry = await storage.ledger.entry("jti-pw")
    assert entry is not None and entry.used_at is None
    stored = await storage.accounts.get(user.id)
    assert stored is not None and stored.password_hash == ARGON
    assert await storage.sessions.get("s1") is not None
    assert isinstance(await storage.limits.take([Hit("acct:ann", 1, 60)]), int)
    assert await storage.audit.recent() == []

    assert await _password_change(storage, user.id, ARGON, ARGON_2)
    entry = await storage.ledger.entry("jti-pw")
    assert entry is not None and entry.used_at is not None
    stored = await storage.accounts.get(user.id)
    assert stored is not None and stored.password_hash == ARGON_2
    assert await storage.sessions.get("s1") is None
    assert isinstance(await storage.limits.take([Hit("acct:ann", 1, 60)]), Taken)
    assert [(r.event, r.user_id) for r in await storage.audit.recent()] == [
        ("password_reset", str(user.id))
    ]
    assert not await _password_change(storage, user.id, ARGON_2, BCRYPT)  # used once


async def test_a_batch_commits_when_it_returns_and_writes_nothing_when_it_raises(
    storage: Storage,
) -> None:
    def write(b: Batch, fail: bool) -> str:
        b.audit.record_many([("reset_requested", "batch", None, None, None)])
        b.ledger.record_many([IssuedToken("b-1", 1, int(b.now), int(b.now) + 60)])
        if fail:
            raise RuntimeError("refused after writing")
        return "done"

    with pytest.raises(RuntimeError, match="refused"):
        await storage.batch(write, True)
    assert await storage.audit.recent() == []
    assert await storage.ledger.entry("b-1") is None
    assert await storage.batch(write, fail=False) == "done"
    assert [r.outcome for r in await storage.audit.recent()] == ["batch"]
    assert await storage.ledger.entry("b-1") is not None


async def test_a_migrated_schema_is_current(storage: Storage) -> None:
    assert await storage.schema_is_current()
