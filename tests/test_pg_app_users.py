"""An app's users table on PostgreSQL (``[users] store = "postgresql"``), on a
real server: lookups as resetd normalises, the hash replaced only over the
hash a token was bound to, inside resetd's transaction when both share one
database, and a mapping that does not fit refused at start, naming its key
and never the url's password."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from resetd.app import create_app
from resetd.config import ConfigError, UsersConfig
from resetd.passwords import hash_kind
from resetd.storage.postgres.app_users import PostgresAppUsers
from resetd.storage.postgres.engine import PostgresEngine
from resetd.users import normalize

from .helpers import GOOD_PASSWORD, NEW_PASSWORD, ConfigFactory, set_new_password
from .relays import Relay
from .test_config import run_cli
from .test_existing_app import STORED_EMAILS
from .test_tokens import assert_rejected, mailed_token

PASSWORD = "Pw-s3cret-4d1e"
SUSAN_HASH = "scrypt:32768:8:1$susansalt$00aa"
JOHN_HASH = "scrypt:32768:8:1$johnsalt$11bb"

# The Flask Mega-Tutorial's model as Flask-SQLAlchemy creates it on PostgreSQL.
FLASK_USER = """
    CREATE TABLE "user" (
        id SERIAL PRIMARY KEY,
        username VARCHAR(64) UNIQUE,
        email VARCHAR(120) UNIQUE,
        password_hash VARCHAR(256),
        about_me VARCHAR(140)
    )
"""
# Another app, in a schema of its own, with text ids.
BILLING_MEMBERS = """
    CREATE SCHEMA billing;
    CREATE TABLE billing.members (
        member_id TEXT PRIMARY KEY,
        login TEXT NOT NULL,
        mail CHARACTER VARYING NOT NULL,
        pw TEXT,
        joined TIMESTAMPTZ NOT NULL DEFAULT now()
    )
"""


def _run(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _hash_of(url: str, username: str) -> str:
    rows = _run(url, 'SELECT password_hash FROM "user" WHERE username = %s', (username,))
    return str(rows[0][0])


def _add(url: str, username: str, email: str, password_hash: str = SUSAN_HASH) -> int:
    rows = _run(
        url,
        'INSERT INTO "user" (username, email, password_hash) VALUES (%s, %s, %s) RETURNING id',
        (username, email, password_hash),
    )
    return int(rows[0][0])


@pytest.fixture
def app_db(pg_url: str) -> str:
    """resetd's migrated database, holding the app's ``user`` table as well."""
    _run(pg_url, FLASK_USER)
    _add(pg_url, "susan", "susan@example.com", SUSAN_HASH)
    _add(pg_url, "john", "John@Example.com", JOHN_HASH)
    return pg_url


@pytest.fixture
async def users(app_db: str) -> AsyncIterator[PostgresAppUsers]:
    store = await PostgresAppUsers.open(UsersConfig(store="postgresql", url=app_db))
    yield store
    await store.close()


@pytest.fixture
async def engine(app_db: str) -> AsyncIterator[PostgresEngine]:
    e = await PostgresEngine.open(app_db, pool_size=2)
    yield e
    await e.close()


async def test_lookups_by_email_and_login_in_a_flask_sqlalchemy_table(
    users: PostgresAppUsers,
) -> None:
    susan = await users.find_by_email("susan@example.com")
    assert susan is not None
    assert (susan.username, susan.email, susan.password_hash) == (
        "susan",
        "susan@example.com",
        SUSAN_HASH,
    )
    assert await users.get(susan.id) == susan
    assert await users.find_by_login("  SUSAN ") == susan
    john = await users.find_by_login("john@example.com")
    assert john is not None and john.email == "John@Example.com"
    assert await users.find_by_email("nobody@example.com") is None
    assert await users.get(john.id + 1000) is None
    found = await users.find_all_by_email(["susan@example.com", "john@example.com", "x@y.z"])
    assert {k: [u.username for u in v] for k, v in found.items()} == {
        "susan@example.com": ["susan"],
        "john@example.com": ["john"],
    }


async def test_lookup_by_email_matches_resetds_normalisation_for_every_stored_form(
    app_db: str, users: PostgresAppUsers
) -> None:
    for n, email in enumerate(STORED_EMAILS):
        _add(app_db, f"u{n}", email)
    keys = [normalize(e) for e in STORED_EMAILS]
    found = await users.find_all_by_email([*keys, "nobody@example.com"])
    assert {k: [u.email for u in us] for k, us in found.items()} == {
        k: [e] for k, e in zip(keys, STORED_EMAILS, strict=True)
    }
    for key, email in zip(keys, STORED_EMAILS, strict=True):
        user = await users.find_by_email(key)
        assert user is not None and user.email == email
    assert await users.find_by_email("strasse@example.com") is not None  # ß folds to ss
    assert await users.find_by_email("plain@example.co") is None
    assert await users.find_by_login("\uff35\uff10") is not None  # u0 typed in full width


async def test_two_spellings_of_one_address_pick_the_one_typed(
    app_db: str, users: PostgresAppUsers
) -> None:
    _add(app_db, "alice", "Alice@example.com")
    _add(app_db, "alice2", "alice@example.com")
    picked = await users.find_by_email("alice@example.com", "Alice@example.com")
    assert picked is not None and picked.username == "alice"
    picked = await users.find_by_email("alice@example.com", "alice@example.com ")
    assert picked is not None and picked.username == "alice2"
    assert await users.find_by_email("alice@example.com", "ALICE@example.com") is None
    assert await users.find_by_email("alice@example.com") is None
    assert len((await users.find_all_by_email(["alice@example.com"]))["alice@example.com"]) == 2


async def test_a_case_insensitive_collation_on_the_apps_columns(app_db: str) -> None:
    # An app may have made its columns compare without case (ICU, nondeterministic),
    # a collation under which PostgreSQL refuses regular expressions and LIKE.
    _run(
        app_db,
        "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', "
        "deterministic = false)",
    )
    _run(app_db, 'ALTER TABLE "user" ALTER COLUMN email TYPE VARCHAR(120) COLLATE nocase')
    _run(app_db, 'ALTER TABLE "user" ALTER COLUMN username TYPE VARCHAR(64) COLLATE nocase')
    _run(app_db, 'ALTER TABLE "user" ALTER COLUMN password_hash TYPE TEXT COLLATE nocase')
    _add(app_db, "Ärger", "ÄRGER@example.com")
    store = await PostgresAppUsers.open(UsersConfig(store="postgresql", url=app_db))
    try:
        assert (await store.find_by_login("SUSAN@example.com")) is not None
        found = await store.find_by_login("ärger")
        assert found is not None and found.email == "ÄRGER@example.com"
        assert not await store.replace_password_hash(found.id, SUSAN_HASH.upper(), "new")
        assert await store.replace_password_hash(found.id, SUSAN_HASH, "new")
        samples = await store.hash_samples(hash_kind)
        assert sorted(map(hash_kind, samples)) == ["new", "scrypt:32768:8:1"]
    finally:
        await store.close()


async def test_the_hash_is_replaced_only_over_the_hash_the_token_was_bound_to(
    app_db: str, users: PostgresAppUsers
) -> None:
    susan = await users.find_by_login("susan")
    assert susan is not None
    assert not await users.replace_password_hash(susan.id, "scrypt:stale$x$y", "new-1")
    assert _hash_of(app_db, "susan") == SUSAN_HASH
    assert await users.replace_password_hash(susan.id, SUSAN_HASH, "new-1")
    assert _hash_of(app_db, "susan") == "new-1"
    assert not await users.upgrade_hash(susan.id, SUSAN_HASH, "new-2")
    assert await users.upgrade_hash(susan.id, "new-1", "new-2")
    assert _hash_of(app_db, "john") == JOHN_HASH


async def test_a_replace_in_resetds_transaction_is_undone_by_its_rollback(
    app_db: str, engine: PostgresEngine
) -> None:
    store = await PostgresAppUsers.open(UsersConfig(store="postgresql"), engine=engine)
    assert store.shared and store.engine is engine
    susan = await store.find_by_login("susan")
    assert susan is not None

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned):
        async with engine.transaction() as tx:
            assert await store.replace_password_hash_in(tx, susan.id, SUSAN_HASH, "new")
            raise Abandoned
    assert _hash_of(app_db, "susan") == SUSAN_HASH
    async with engine.transaction() as tx:
        assert await store.replace_password_hash_in(tx, susan.id, SUSAN_HASH, "new")
        assert _hash_of(app_db, "susan") == SUSAN_HASH  # not before the commit
    assert _hash_of(app_db, "susan") == "new"
    await store.close()
    assert await engine.now() > 0  # a shared engine stays open


async def test_an_app_in_another_database_writes_in_a_transaction_of_its_own(
    pg_empty_url: str, pg_url: str
) -> None:
    _run(pg_empty_url, FLASK_USER)
    user_id = _add(pg_empty_url, "susan", "susan@example.com")
    engine = await PostgresEngine.open(pg_url, pool_size=1)
    store = await PostgresAppUsers.open(
        UsersConfig(store="postgresql", url=pg_empty_url), engine=engine
    )
    try:
        assert not store.shared
        with pytest.raises(RuntimeError):
            async with engine.transaction() as tx:
                assert await store.replace_password_hash_in(tx, user_id, SUSAN_HASH, "new")
                raise RuntimeError
        assert _hash_of(pg_empty_url, "susan") == "new"
    finally:
        await store.close()
        await engine.close()


async def test_resetd_on_sqlite_resets_a_password_in_an_apps_postgresql_table(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, pg_empty_url: str
) -> None:
    _run(pg_empty_url, FLASK_USER)
    _add(pg_empty_url, "susan", "susan@example.com", generate_password_hash(GOOD_PASSWORD))
    _add(pg_empty_url, "john", "john@example.com", JOHN_HASH)
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port},
        users={"store": "postgresql", "url": pg_empty_url},
    )
    assert cfg.database.engine == "sqlite"
    client = await aiohttp_client(create_app(cfg))
    token = await mailed_token(client, relay, "Susan@Example.com")
    assert relay.received[0].rcpt_tos == ["susan@example.com"]
    assert (await set_new_password(client, token)).status == 303
    new = _hash_of(pg_empty_url, "susan")
    assert new.startswith("scrypt:") and check_password_hash(new, NEW_PASSWORD)
    assert _hash_of(pg_empty_url, "john") == JOHN_HASH
    await assert_rejected(client, token)


async def test_a_table_in_another_schema_with_text_ids(app_db: str) -> None:
    _run(app_db, BILLING_MEMBERS)
    _run(
        app_db,
        "INSERT INTO billing.members (member_id, login, mail, pw) VALUES "
        "('7', 'Ann', 'ann@example.com', 'h7'), ('abc', 'bob', 'bob@example.com', 'hb'),"
        " ('008', 'cy', 'cy@example.com', 'h8')",
    )
    cfg = UsersConfig(
        store="postgresql",
        url=app_db,
        schema="billing",
        table="members",
        id_column="member_id",
        email_column="mail",
        username_column="login",
        password_hash_column="pw",
    )
    store = await PostgresAppUsers.open(cfg)
    try:
        ann = await store.find_by_login("ann")
        assert ann is not None and (ann.id, ann.email) == (7, "ann@example.com")
        assert await store.get(7) == ann
        # An id that is no integer, or not spelt as one, is no account resetd can name.
        assert await store.find_by_email("bob@example.com") is None
        assert await store.find_by_email("cy@example.com") is None
        assert await store.replace_password_hash(7, "h7", "new")
        assert _run(app_db, "SELECT pw FROM billing.members WHERE member_id = '7'") == [("new",)]
        assert await store.find_by_email("susan@example.com") is None  # public's table
    finally:
        await store.close()


async def test_a_citext_address_column(app_db: str) -> None:
    if not _run(app_db, "SELECT 1 FROM pg_available_extensions WHERE name = 'citext'"):
        pytest.skip("PostgreSQL's citext extension is not installed")
    _run(app_db, "CREATE EXTENSION citext")
    _run(app_db, 'ALTER TABLE "user" ALTER COLUMN email TYPE citext')
    store = await PostgresAppUsers.open(UsersConfig(store="postgresql", url=app_db))
    try:
        john = await store.find_by_email("john@example.com", "JOHN@example.com")
        assert john is not None and john.email == "John@Example.com"
    finally:
        await store.close()


async def test_hash_samples_give_one_hash_of_each_kind(
    app_db: str, users: PostgresAppUsers
) -> None:
    stored = [
        "scrypt:32768:8:1$othersalt$22cc",
        "pbkdf2:sha256:600000$s$33dd",
        "$2b$12$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQ",
        "$2b$04$abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQ",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$ZGlnZXN0",
        "$argon2id$v=19$m=19456,t=2,p=1$b3RoZXI$ZGlnZXN0",
        "$argon2i$m=4096,t=3,p=1$c2FsdA$ZGlnZXN0",
    ]
    for n, h in enumerate(stored):
        _add(app_db, f"h{n}", f"h{n}@example.com", h)
    samples = await users.hash_samples(hash_kind)
    kinds = [hash_kind(s) for s in samples]
    assert sorted(kinds) == sorted({hash_kind(h) for h in [*stored, SUSAN_HASH]})
    assert len(await users.hash_samples(hash_kind, limit=2)) == 2


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"table": "users_"}, "[users] table: no table 'users_' in schema 'public' of "),
        ({"schema": "nowhere"}, "[users] schema: no schema 'nowhere' in "),
        (
            {"email_column": "mail"},
            "[users] email_column: table 'user' has no column 'mail' "
            "(it has: about_me, created, email, id, password_hash, username)",
        ),
        ({"id_column": "created"}, "[users] id_column: column 'created' is timestamp"),
        ({"email_column": "id"}, "[users] email_column: column 'id' is integer, expected text"),
    ],
)
async def test_a_mapping_that_does_not_fit_names_its_key(
    app_db: str, mapping: dict[str, str], expected: str
) -> None:
    _run(app_db, 'ALTER TABLE "user" ADD COLUMN created TIMESTAMP')
    url = f"{app_db}&password={PASSWORD}"
    with pytest.raises(ConfigError) as info:
        await PostgresAppUsers.open(UsersConfig(store="postgresql", url=url, **mapping))
    message = str(info.value)
    assert message.startswith(expected)
    assert PASSWORD not in message
    if "of " in expected:
        assert "password=***" in message


def test_serve_stops_on_a_mapping_that_does_not_fit(tmp_path: Path, app_db: str) -> None:
    url = f"{app_db}&password={PASSWORD}"
    cfg = tmp_path / "resetd.toml"
    cfg.write_text(
        f'[server]\nsecret_key = "{"k" * 32}"\nport = 0\n[database]\npath = "{tmp_path / "r.db"}"\n'
        f'[dev_inbox]\nenabled = false\n[users]\nstore = "postgresql"\nurl = "{url}"\n'
        'email_column = "mail"\n'
    )
    # This checkout's resetd, whichever one is installed.
    checkout = str(Path(__file__).resolve().parents[1])
    result = run_cli("serve", "--config", str(cfg), cwd=tmp_path, env={"PYTHONPATH": checkout})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "[users] email_column: table 'user' has no column 'mail'" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


async def test_names_fold_as_postgresql_folds_unquoted_ones(app_db: str) -> None:
    cfg = UsersConfig(store="postgresql", url=app_db, table="User", email_column="EMAIL")
    store = await PostgresAppUsers.open(cfg)
    try:
        assert await store.find_by_email("susan@example.com") is not None
    finally:
        await store.close()


async def test_a_missing_url_or_an_unreachable_database_is_a_config_error(pg_url: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[users\] url: required"):
        await PostgresAppUsers.open(UsersConfig(store="postgresql"))
    url = pg_url.replace("/resetd_test_", "/resetd_gone_", 1) + f"&password={PASSWORD}"
    with pytest.raises(ConfigError) as info:
        await PostgresAppUsers.open(UsersConfig(store="postgresql", url=url))
    message = str(info.value)
    assert message.startswith("[users] url: cannot connect to ")
    assert "password=***" in message and PASSWORD not in message


@pytest.fixture
def reader(app_db: str) -> Iterator[str]:
    """A role that may read the app's table but not write its hashes."""
    name = f"reader_{app_db.rsplit('resetd_test_', 1)[1][:12]}"
    _run(app_db, f"CREATE ROLE {name} LOGIN")
    _run(app_db, f'GRANT SELECT ON "user" TO {name}')
    try:
        yield name
    finally:
        _run(app_db, f"DROP OWNED BY {name}")
        _run(app_db, f"DROP ROLE {name}")


async def test_a_role_without_a_privilege_it_needs_is_refused_at_start(
    app_db: str, reader: str
) -> None:
    url = app_db.replace("user=postgres", f"user={reader}")
    assert url != app_db
    with pytest.raises(ConfigError) as info:
        await PostgresAppUsers.open(UsersConfig(store="postgresql", url=url))
    assert str(info.value).startswith(
        "[users] password_hash_column: the role in [users] url has no UPDATE privilege "
        "on column 'password_hash' of table 'user'"
    )
    _run(app_db, BILLING_MEMBERS)
    _run(app_db, f"GRANT SELECT, UPDATE ON billing.members TO {reader}")
    with pytest.raises(ConfigError) as info:
        await PostgresAppUsers.open(UsersConfig(store="postgresql", url=url, schema="billing"))
    assert str(info.value).startswith(
        "[users] schema: the role in [users] url has no USAGE privilege on schema 'billing'"
    )
