"""Password reset for an app that already has a users table (microblog-style)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from argon2 import PasswordHasher
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from resetd.app import create_app
from resetd.config import Config, ConfigError
from resetd.config_load import load_config

from .helpers import (
    GOOD_PASSWORD,
    NEW_PASSWORD,
    TEST_SECRET,
    ConfigFactory,
    set_new_password,
    sign_in,
)
from .relays import Relay
from .test_config import run_cli
from .test_tokens import assert_rejected, mailed_token

APP_LOGIN = "http://app.example/auth/login"


class Base(DeclarativeBase):
    pass


class AppUser(Base):
    """The Flask Mega-Tutorial's model, as its migrations create it."""

    __tablename__ = "user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True, unique=True)
    email: Mapped[str] = mapped_column(String(120), index=True, unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    about_me: Mapped[str | None] = mapped_column(String(140))


HASHERS: dict[str, Callable[[str], str]] = {
    "werkzeug": generate_password_hash,
    "bcrypt": lambda pw: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode(),
    "argon2": PasswordHasher(time_cost=1, memory_cost=8192).hash,
}
CHECKERS: dict[str, Callable[[str, str], bool]] = {
    "werkzeug": check_password_hash,
    "bcrypt": lambda stored, pw: bcrypt.checkpw(pw.encode(), stored.encode()),
    "argon2": lambda stored, pw: _argon2_ok(stored, pw),
}


def _argon2_ok(stored: str, pw: str) -> bool:
    try:
        return PasswordHasher().verify(stored, pw)
    except Exception:
        return False


def make_app_db(path: Path, fmt: str) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(
                AppUser(
                    username="susan",
                    email="susan@example.com",
                    password_hash=HASHERS[fmt](GOOD_PASSWORD),
                )
            )
            session.add(
                AppUser(
                    username="john",
                    email="john@example.com",
                    password_hash=HASHERS[fmt](GOOD_PASSWORD),
                )
            )
            session.commit()
    finally:
        engine.dispose()


def stored_hash(path: Path, username: str) -> str:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            user = session.scalars(select(AppUser).where(AppUser.username == username)).one()
            assert user.password_hash is not None
            return user.password_hash
    finally:
        engine.dispose()


def change_password_in_app(path: Path, username: str, password: str) -> None:
    """What the app's own "change password" page does."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            user = session.scalars(select(AppUser).where(AppUser.username == username)).one()
            user.password_hash = generate_password_hash(password)
            session.commit()
    finally:
        engine.dispose()


async def signed_in_over_app_store(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> tuple[Path, Any]:
    """An app database with Werkzeug hashes, resetd over it, susan signed in."""
    app_db = tmp_path / "app.db"
    make_app_db(app_db, "werkzeug")
    cfg = make_config(users={"store": "sqlite", "path": str(app_db)}, dev_inbox={"enabled": False})
    client = await aiohttp_client(create_app(cfg))
    assert (await sign_in(client, "susan", GOOD_PASSWORD)).status == 303
    return app_db, client


def schema(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    return rows


@pytest.mark.parametrize("fmt", ["werkzeug", "bcrypt", "argon2"])
async def test_reset_writes_a_hash_the_apps_own_library_accepts(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path, fmt: str
) -> None:
    app_db = tmp_path / "app.db"
    make_app_db(app_db, fmt)
    before = schema(app_db)
    john_before = stored_hash(app_db, "john")
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port},
        users={"store": "sqlite", "path": str(app_db), "hash_format": fmt},
        server={"login_url": APP_LOGIN, "login_pages": False},
    )
    client = await aiohttp_client(create_app(cfg))

    token = await mailed_token(client, relay, "Susan@Example.com")
    assert relay.received[0].rcpt_tos == ["susan@example.com"]
    resp = await set_new_password(client, token)
    assert resp.status == 303
    assert resp.headers["Location"] == APP_LOGIN  # the flow ends in the host app

    new = stored_hash(app_db, "susan")
    assert CHECKERS[fmt](new, NEW_PASSWORD)
    assert not CHECKERS[fmt](new, GOOD_PASSWORD)
    if fmt == "werkzeug":
        assert new.startswith("scrypt:")
    assert stored_hash(app_db, "john") == john_before  # only that user's row is written
    assert schema(app_db) == before  # resetd never alters the app's schema
    await assert_rejected(client, token)


async def test_own_login_pages_can_be_turned_off(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    app_db = tmp_path / "app.db"
    make_app_db(app_db, "werkzeug")
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port},
        users={"store": "sqlite", "path": str(app_db)},
        server={"login_url": APP_LOGIN, "login_pages": False},
    )
    client = await aiohttp_client(create_app(cfg))
    assert (await client.get("/login")).status == 404
    page = await (await client.get("/reset_password_request")).text()
    assert f'href="{APP_LOGIN}"' in page


async def test_password_changed_by_the_app_kills_an_outstanding_link(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, tmp_path: Path
) -> None:
    app_db = tmp_path / "app.db"
    make_app_db(app_db, "werkzeug")
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port},
        users={"store": "sqlite", "path": str(app_db)},
    )
    client = await aiohttp_client(create_app(cfg))
    token = await mailed_token(client, relay)
    # The app changes the password itself (its own "change password" page).
    change_password_in_app(app_db, "susan", "changed inside the app itself")
    await assert_rejected(client, token)
    assert (await set_new_password(client, token)).status == 400


async def test_sign_in_with_an_app_hash_works_through_resetds_pages(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    app_db, _ = await signed_in_over_app_store(aiohttp_client, make_config, tmp_path)
    assert check_password_hash(stored_hash(app_db, "susan"), GOOD_PASSWORD)


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ({"table": "users"}, "[users] table: no table 'users'"),
        ({"email_column": "mail"}, "[users] email_column: table 'user' has no column 'mail'"),
        (
            {"id_column": "username"},
            "[users] id_column: column 'username' is VARCHAR(64), expected an integer",
        ),
        ({"path": "/nonexistent/app.db"}, "[users] path: no database file"),
    ],
)
def test_wrong_mapping_is_a_clear_startup_error(
    tmp_path: Path, users: dict[str, str], expected: str
) -> None:
    app_db = tmp_path / "app.db"
    make_app_db(app_db, "werkzeug")
    mapping = {"store": "sqlite", "path": str(app_db), **users}
    lines = "\n".join(f'{k} = "{v}"' for k, v in mapping.items())
    cfg = tmp_path / "resetd.toml"
    cfg.write_text(
        f'[server]\nsecret_key = "{"k" * 32}"\nport = 0\n[database]\npath = "{tmp_path / "r.db"}"\n'
        f"[users]\n{lines}\n"
    )
    result = run_cli("serve", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


DB_PASSWORD = "Pw-s3cret-77b0"
RESETD_PG = f"postgresql://resetd:{DB_PASSWORD}@db.example.test/resetd"
APP_PG = f"postgresql://app:{DB_PASSWORD}@appdb.example.test/microblog"


def _users_config(users: dict[str, Any], database: dict[str, Any] | None = None) -> Config:
    return load_config(
        None,
        env={},
        overrides={
            "server": {"secret_key": TEST_SECRET},
            "database": database or {},
            "users": users,
        },
    )


def test_an_apps_postgresql_table_defaults_to_resetds_database_in_public() -> None:
    users = _users_config({"store": "postgresql"}, {"url": RESETD_PG}).users
    assert (users.url, users.schema) == (RESETD_PG, "public")
    users = _users_config(
        {"store": "postgresql", "url": APP_PG, "schema": "microblog"}, {"url": RESETD_PG}
    ).users
    assert (users.url, users.schema, users.effective_hash_format) == (
        APP_PG,
        "microblog",
        "werkzeug",
    )
    cfg = _users_config({"store": "postgresql", "url": APP_PG})
    assert cfg.database.engine == "sqlite" and cfg.users.url == APP_PG
    assert DB_PASSWORD not in repr(cfg)
    assert cfg.users.redacted_url() == "postgresql://app:***@appdb.example.test/microblog"


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ({"store": "postgresql"}, '[users] url: required when store = "postgresql"'),
        ({"store": "postgresql", "url": "sqlite:///app.db"}, "[users] url: store = "),
        ({"store": "postgresql", "url": "mysql://u:x@h/db"}, "[users] url: expected sqlite:"),
        (
            {"store": "postgresql", "url": f"postgresql://u:{DB_PASSWORD}@h:99999/db"},
            "[users] url: expected a port",
        ),
        ({"store": "postgresql", "url": 5}, "[users] url: expected a string, got an integer"),
        ({"store": "sqlite", "path": "app.db", "url": APP_PG}, "[users] url: only for store"),
        ({"store": "resetd", "schema": "app"}, "[users] schema: only for store"),
        ({"store": "postgresql", "url": APP_PG, "path": "a.db"}, "[users] path: only for"),
        ({"store": "postgresql", "url": APP_PG, "schema": "a-b"}, "[users] schema: expected"),
        ({"store": "postgresql", "url": APP_PG, "schema": "pg_catalog"}, "[users] schema:"),
        ({"store": "postgresql", "url": APP_PG, "table": "user;"}, "[users] table: expected"),
        ({"store": "mysql"}, '[users] store: expected "resetd", "sqlite" or "postgresql"'),
    ],
)
def test_bad_users_values_name_their_key(users: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        _users_config(users)
    assert str(info.value).startswith(expected)
    assert DB_PASSWORD not in str(info.value)


async def test_password_changed_by_the_app_signs_out_resetds_sessions(
    aiohttp_client: Any, make_config: ConfigFactory, tmp_path: Path
) -> None:
    app_db, client = await signed_in_over_app_store(aiohttp_client, make_config, tmp_path)
    assert (await client.get("/", allow_redirects=False)).status == 200
    change_password_in_app(app_db, "susan", "changed inside the app itself")
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/login"


STORED_EMAILS = [
    "Plain@Example.COM",  # ASCII: matched by SQLite's own lower(trim())
    "  padded@example.com ",
    "Straße@example.com",  # non-ASCII: through resetd's normalize() in SQL
    "ｆｕｌｌｗｉｄｔｈ@example.com",
    "tab\t@example.com",  # whitespace outside printable ASCII
    "dotless\u0131@example.com",
]


async def test_lookup_by_email_matches_resetds_normalisation_for_every_stored_form(
    tmp_path: Path,
) -> None:
    from resetd.config import UsersConfig
    from resetd.storage.sqlite.app_users import SqliteAppUsers
    from resetd.users import normalize

    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE user (id INTEGER PRIMARY KEY, username TEXT, email TEXT, password_hash TEXT)"
    )
    conn.executemany(
        "INSERT INTO user (username, email, password_hash) VALUES (?, ?, 'x')",
        [(f"u{n}", email) for n, email in enumerate(STORED_EMAILS)],
    )
    conn.commit()
    conn.close()
    store = await SqliteAppUsers.open(UsersConfig(store="sqlite", path=str(path)))
    try:
        keys = [normalize(e) for e in STORED_EMAILS]
        found = await store.find_all_by_email([*keys, "nobody@example.com"])
        assert {k: [u.email for u in us] for k, us in found.items()} == {
            k: [e] for k, e in zip(keys, STORED_EMAILS, strict=True)
        }
        for key, email in zip(keys, STORED_EMAILS, strict=True):
            user = await store.find_by_email(key)
            assert user is not None and user.email == email
        assert await store.find_by_email("strasse@example.com") is not None  # ß folds to ss
        assert await store.find_by_email("plain@example.co") is None
    finally:
        await store.close()
