"""``resetd db copy --to URL``: a SQLite deployment's rows moved into PostgreSQL,
ids kept, in one transaction, and the table list the copy walks checked
against both engines' schemas."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from resetd.config_load import load_config
from resetd.db import Database
from resetd.reset.compose import ComposedMail
from resetd.storage.ledger import IssuedToken
from resetd.storage.limits import Hit
from resetd.storage.outbox import NewEvent, NewMail, RelayStatus
from resetd.storage.sqlite import SqliteStorage
from resetd.storage.tables import TABLES
from resetd.storage.transaction import Batch

from .helpers import GOOD_PASSWORD, TEST_SECRET
from .processes import run_cli, write_config

Rows = dict[str, list[tuple[Any, ...]]]


def _config(tmp_path: Path) -> str:
    return str(
        write_config(
            tmp_path / "resetd.toml",
            {
                "server": {"secret_key": TEST_SECRET},
                "database": {"path": str(tmp_path / "resetd.db")},
                "dev_inbox": {"enabled": False},
                "passwords": {"argon2_memory_cost": 8192, "argon2_time_cost": 1},
            },
        )
    )


async def _user_add(cfg: str, email: str, username: str) -> None:
    code, _, err = await run_cli(
        "user", "add", "--email", email, "--username", username, "--password-stdin",
        "--config", cfg, stdin=f"{GOOD_PASSWORD}\n".encode(), timeout=60,
    )  # fmt: skip
    assert code == 0, err


async def _fill(cfg: str) -> None:
    """Rows in every one of resetd's tables, written by resetd itself: accounts
    through ``resetd user add``, the rest through the storage's interfaces as a
    reset request's flow and the outbox write them."""
    await _user_add(cfg, "susan@example.com", "susan")
    await _user_add(cfg, "jose@example.com", "José Ñandú")
    storage = await SqliteStorage.open(load_config(cfg).database)
    try:

        def arrange(b: Batch) -> None:
            b.requests.add_many(
                [
                    ("susan@example.com", "Susan@example.com", "127.0.0.1", "curl/8", False, "en"),
                    ("nobody@example.com", "nobody@example.com", "::1", "Mozilla ü", True, "de"),
                ]
            )
            assert b.requests.claim([1, 2]) == {1, 2}
            b.requests.record_failures([(2, "no account for this address")])
            b.ledger.record_many(
                [
                    IssuedToken("jti-used", 1, int(b.now) - 60, int(b.now) + 3600),
                    IssuedToken("jti-open", 2, int(b.now), int(b.now) + 3600),
                ]
            )
            b.limits.hit_many([Hit("reset:ip:127.0.0.1", 5, 3600), Hit("reset:email:s", 3, 60)])
            mail = ComposedMail("r@example.test", "susan@example.com", "Reset", b"\x00\xffbody")
            b.outbox.enqueue_many("reset", [NewMail(mail, 1, b.now + 3600)])
            b.outbox.enqueue_events(
                [NewEvent("password.changed", "ev-1", b'{"id": "ev-1"}', "https://app.test/h", 1)]
            )
            b.audit.record_many(
                [
                    ("reset_request", "queued", None, "127.0.0.1", "curl/8"),
                    ("password_change", "ok", 1, "::1", "Mozilla ü"),
                ]
            )

        await storage.batch(arrange)
        async with storage.transaction() as tx:
            assert await tx.ledger.consume("jti-used", tx.now)
        now = time.time()
        await storage.sessions.create("digest-1", "1", True, now, None)
        await storage.sessions.create("digest-2", "2", False, now + 0.25, None)
        await storage.outbox.relay_status.save(
            "127.0.0.1:25", RelayStatus("backing_off", now, "421 busy", "try later")
        )
    finally:
        await storage.close()


def _sqlite_rows(path: Path) -> Rows:
    with sqlite3.connect(path) as conn:
        return {
            t.name: conn.execute(
                f"SELECT {', '.join(t.column_names)} FROM {t.name} ORDER BY {', '.join(t.key)}"
            ).fetchall()
            for t in TABLES
        }


def _pg_rows(url: str, schema: str = "public") -> Rows:
    with psycopg.connect(url) as conn:
        return {
            t.name: conn.execute(
                sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, t.column_names)),
                    sql.Identifier(schema, t.name),
                    sql.SQL(", ").join(map(sql.Identifier, t.key)),
                )
            ).fetchall()
            for t in TABLES
        }


async def _copy(cfg: str, url: str, *flags: str) -> tuple[int, str, str]:
    return await run_cli("db", "copy", "--to", url, *flags, "--config", cfg, timeout=60)


async def test_every_row_arrives_equal_with_its_id(tmp_path: Path, pg_empty_url: str) -> None:
    cfg = _config(tmp_path)
    await _fill(cfg)
    source = _sqlite_rows(tmp_path / "resetd.db")
    empty = [name for name, rows in source.items() if not rows]
    assert empty == [], f"the fill leaves these tables empty, so their copy is untested: {empty}"

    code, out, err = await _copy(cfg, pg_empty_url, "--schema", "moved")
    assert code == 0, err
    assert _pg_rows(pg_empty_url, "moved") == source
    lines = out.splitlines()
    for table, line in zip(TABLES, lines, strict=False):
        rows = len(source[table.name])
        assert line.split() == [table.name, str(rows), "row" if rows == 1 else "rows", "copied"]
    total = sum(len(rows) for rows in source.values())
    assert len(lines) == len(TABLES) + 1
    assert lines[-1].startswith(f"copied {total} rows from {tmp_path / 'resetd.db'} to ")
    assert lines[-1].split(" schema ")[1].startswith("moved;")


async def test_new_rows_after_a_copy_take_ids_past_the_copied_ones(
    tmp_path: Path, pg_empty_url: str
) -> None:
    cfg = _config(tmp_path)
    await _fill(cfg)
    code, _, err = await _copy(cfg, pg_empty_url)
    assert code == 0, err
    source = _sqlite_rows(tmp_path / "resetd.db")
    with psycopg.connect(pg_empty_url) as conn:
        added = conn.execute(
            "INSERT INTO users (username, username_norm, email, email_norm, password_hash, "
            "created_at, updated_at) VALUES ('new', 'new', 'new@example.com', "
            "'new@example.com', 'h', 0, 0) RETURNING id"
        ).fetchone()
        assert added is not None and added[0] == max(r[0] for r in source["users"]) + 1
        for table in TABLES:
            if table.identity is None:
                continue
            nxt = conn.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s))", (table.name, table.identity)
            ).fetchone()
            assert nxt is not None
            assert nxt[0] > max(r[0] for r in source[table.name]), table.name


async def test_a_second_copy_is_refused_unless_told_to_replace(tmp_path: Path, pg_url: str) -> None:
    cfg = _config(tmp_path)
    await _fill(cfg)
    code, _, err = await _copy(cfg, pg_url)
    assert code == 0, err
    await _user_add(cfg, "late@example.com", "late")
    with psycopg.connect(pg_url) as conn:  # a row only the target has
        conn.execute("DELETE FROM sessions WHERE id = 'digest-2'")
    before = _pg_rows(pg_url)

    code, out, err = await _copy(cfg, pg_url)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("resetd: db copy: ") and "--replace" in err
    assert "users: 2" in err and "audit: " in err
    assert _pg_rows(pg_url) == before

    code, _, err = await _copy(cfg, pg_url, "--replace")
    assert code == 0, err
    assert _pg_rows(pg_url) == _sqlite_rows(tmp_path / "resetd.db")


async def test_a_value_postgresql_cannot_hold_is_named_and_nothing_is_copied(
    tmp_path: Path, pg_url: str
) -> None:
    cfg = _config(tmp_path)
    await _fill(cfg)
    with sqlite3.connect(tmp_path / "resetd.db") as conn:
        conn.execute("UPDATE audit SET user_agent = ? WHERE id = 2", ("evil\x00agent",))
    code, out, err = await _copy(cfg, pg_url)
    assert code == 2
    assert out == "" and len(err.splitlines()) == 1, err
    assert "audit row id=2: user_agent: holds a NUL character" in err
    # One transaction: the tables copied before audit were rolled back with it.
    assert all(rows == [] for rows in _pg_rows(pg_url).values())


async def test_a_target_still_in_use_is_refused_after_a_bounded_wait(
    tmp_path: Path, pg_url: str
) -> None:
    cfg = _config(tmp_path)
    await _user_add(cfg, "susan@example.com", "susan")
    with psycopg.connect(pg_url) as holder:
        # What a resetd still writing there holds: the copy cannot lock the table.
        holder.execute("LOCK TABLE audit IN ROW EXCLUSIVE MODE")
        code, out, err = await _copy(cfg, pg_url)
        holder.rollback()
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "another session holds resetd's tables" in err, err
    assert _pg_rows(pg_url)["users"] == []


async def test_a_bad_url_is_one_line_without_the_password(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    await _user_add(cfg, "susan@example.com", "susan")
    for url, expected in [
        ("postgresql://resetd:Sekr1t-pw@127.0.0.1:1/resetd", "cannot connect to"),
        ("postgresql://resetd@127.0.0.1:1/resetd?password=Sekr1t-pw", "cannot connect to"),
        ("postgresql://resetd:Sekr1t-pw@db.example:99999/resetd", "expected a port"),
        ("mysql://resetd:Sekr1t-pw@db.example/resetd", "expected sqlite:///"),
        ("sqlite:///other.db", "expected a postgresql:// url"),
    ]:
        code, out, err = await _copy(cfg, url)
        assert code == 2, (url, err)
        assert out == "" and len(err.splitlines()) == 1, err
        assert err.startswith("resetd: ") and expected in err, err
        assert "Sekr1t" not in err
        assert "Traceback" not in err


async def test_a_bad_schema_or_a_postgresql_source_is_one_line(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    code, out, err = await _copy(cfg, "postgresql://r@127.0.0.1:1/r", "--schema", "Not-Plain")
    assert (code, out) == (2, "")
    assert err.startswith("resetd: [database] schema: expected a plain lower-case name"), err
    # The source is the SQLite file a configuration names, not a PostgreSQL url.
    on_pg = write_config(
        tmp_path / "pg.toml",
        {
            "server": {"secret_key": TEST_SECRET},
            "database": {"url": "postgresql://resetd:Sekr1t-pw@127.0.0.1:1/resetd"},
        },
    )
    code, out, err = await _copy(str(on_pg), "postgresql://r@127.0.0.1:1/other")
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "Sekr1t" not in err, err
    assert err.startswith("resetd: [database] url: postgresql://resetd:***@127.0.0.1:1/resetd")


async def test_a_missing_sqlite_file_is_refused_not_created(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    code, _, err = await _copy(cfg, "postgresql://resetd:pw@127.0.0.1:1/resetd")
    assert code == 2
    assert "no such file" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "resetd.db").exists()


async def test_the_help_says_the_dev_inbox_stays_on_sqlite() -> None:
    code, out, _ = await run_cli("db", "copy", "--help")
    assert code == 0
    assert "The dev inbox's database is not copied" in " ".join(out.split())


# --- the table list against both schemas -----------------------------------------

SQLITE_DECL = {"integer": "INTEGER", "real": "REAL", "text": "TEXT", "blob": "BLOB"}
POSTGRES_TYPES = {
    "integer": {"integer", "bigint"},
    "real": {"double precision"},
    "text": {"text"},
    "blob": {"bytea"},
}


async def test_the_copied_tables_are_every_table_of_both_schemas(
    tmp_path: Path, pg_url: str
) -> None:
    """A migration that adds a table or a column fails here until TABLES names
    it: otherwise ``resetd db copy`` would leave it behind."""
    db = await Database.open(str(tmp_path / "newest.db"))
    await db.close()
    listed = {t.name: t for t in TABLES}
    with sqlite3.connect(tmp_path / "newest.db") as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        assert names == set(listed)
        for name, table in listed.items():
            info = conn.execute(f"PRAGMA table_info({name})").fetchall()
            assert {r[1]: r[2].upper() for r in info} == {
                column: SQLITE_DECL[kind] for column, kind in table.columns
            }, name
            key = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
            assert tuple(key) == table.key, name

    with psycopg.connect(pg_url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_identity = 'YES'"
            " FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name <> 'schema_version'"
        ).fetchall()
        keys = conn.execute(
            "SELECT k.table_name, k.column_name FROM information_schema.key_column_usage k"
            " JOIN information_schema.table_constraints t"
            "   ON t.constraint_name = k.constraint_name AND t.table_schema = k.table_schema"
            " WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = 'public'"
            " ORDER BY k.table_name, k.ordinal_position"
        ).fetchall()
    assert {r[0] for r in columns} == set(listed)
    for name, table in listed.items():
        found = {r[1]: r[2] for r in columns if r[0] == name}
        assert set(found) == set(table.column_names), name
        for column, kind in table.columns:
            assert found[column] in POSTGRES_TYPES[kind], f"{name}.{column}: {found[column]}"
        identity = [r[1] for r in columns if r[0] == name and r[3]]
        assert identity == ([table.identity] if table.identity else []), name
        assert tuple(r[1] for r in keys if r[0] == name) == table.key, name
