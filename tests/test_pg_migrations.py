"""PostgreSQL's migrations: SQLite's versions, the same tables and columns at
each of them, and instances that start together migrating once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from resetd.db import Database
from resetd.schema import MIGRATIONS
from resetd.storage.postgres.engine import PostgresEngine
from resetd.storage.postgres.migrations import (
    POSTGRES_MIGRATIONS,
    SchemaTooNew,
    migrate_to_newest,
    schema_is_current,
)
from resetd.storage.postgres.startup import open_migrated

# A column's type on SQLite (as declared) → what PostgreSQL may call it.
TYPES = {
    "INTEGER": {"integer", "bigint"},
    "TEXT": {"text"},
    "REAL": {"double precision"},
    "BLOB": {"bytea"},
}

Shape = dict[str, dict[str, tuple[str, bool, bool]]]  # table → column → (type, not null, pk)


def test_both_engines_have_the_same_schema_versions() -> None:
    assert len(POSTGRES_MIGRATIONS) == len(MIGRATIONS) == 10


def _sqlite_shape(path: str) -> tuple[Shape, set[str]]:
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        shape: Shape = {}
        for table in tables:
            shape[table] = {
                name: (decl.upper(), bool(notnull) or bool(pk), bool(pk))
                for _cid, name, decl, notnull, _default, pk in conn.execute(
                    f"PRAGMA table_info({table})"
                )
            }
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
    return shape, indexes


async def _postgres_shape(engine: PostgresEngine) -> tuple[Shape, set[str]]:
    columns = await engine.fetchall(
        "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable,"
        " EXISTS (SELECT 1 FROM information_schema.key_column_usage k"
        "   JOIN information_schema.table_constraints t"
        "     ON t.constraint_name = k.constraint_name AND t.table_schema = k.table_schema"
        "   WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = c.table_schema"
        "     AND k.table_name = c.table_name AND k.column_name = c.column_name) AS pk"
        " FROM information_schema.columns c"
        " WHERE c.table_schema = %s AND c.table_name <> 'schema_version'",
        (engine.schema,),
    )
    shape: Shape = {}
    for table, column, data_type, nullable, pk in columns:
        shape.setdefault(table, {})[column] = (data_type, nullable == "NO", pk)
    indexes = await engine.fetchall(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        (engine.schema,),
    )
    return shape, {r[0] for r in indexes}


async def test_each_migration_makes_the_same_tables_and_columns_on_both(
    pg_empty_url: str, tmp_path: Path
) -> None:
    engine = await PostgresEngine.open(pg_empty_url, pool_size=1, schema="steps")
    try:
        for version in range(1, len(MIGRATIONS) + 1):
            db = await Database.open(str(tmp_path / "steps.db"), MIGRATIONS[:version])
            await db.close()
            assert await migrate_to_newest(engine, POSTGRES_MIGRATIONS[:version]) == version
            lite, lite_indexes = _sqlite_shape(str(tmp_path / "steps.db"))
            pg, pg_indexes = await _postgres_shape(engine)
            assert set(pg) == set(lite), f"version {version}: tables differ"
            for table, columns in lite.items():
                assert set(pg[table]) == set(columns), f"version {version}: {table}'s columns"
                for column, (decl, notnull, pk) in columns.items():
                    pg_type, pg_notnull, pg_pk = pg[table][column]
                    where = f"version {version}: {table}.{column}"
                    assert pg_type in TYPES[decl], f"{where}: {decl} became {pg_type}"
                    assert (pg_notnull, pg_pk) == (notnull, pk), where
            assert pg_indexes == lite_indexes, f"version {version}: indexes differ"
    finally:
        await engine.close()


async def test_instances_starting_together_migrate_once(pg_empty_url: str) -> None:
    engines = await asyncio.wait_for(
        asyncio.gather(*(open_migrated(pg_empty_url, pool_size=1) for _ in range(4))), 60
    )
    try:
        rows = await engines[0].fetchall("SELECT version, applied_by FROM schema_version")
        assert sorted(r["version"] for r in rows) == list(range(1, len(MIGRATIONS) + 1))
        for engine in engines:
            assert await schema_is_current(engine)
        # Applied by whoever took the lock first; the others found the work done.
        assert all(r["applied_by"].startswith("resetd pid ") for r in rows)
    finally:
        for engine in engines:
            await engine.close()


async def test_a_current_schema_is_left_as_it_is(pg_url: str) -> None:
    engine = await open_migrated(pg_url, pool_size=1)
    try:
        rows = await engine.fetchall("SELECT version FROM schema_version")
        assert len(rows) == len(POSTGRES_MIGRATIONS)
    finally:
        await engine.close()


async def test_a_schema_newer_than_this_resetd_is_refused(pg_url: str) -> None:
    engine = await PostgresEngine.open(pg_url, pool_size=1)
    try:
        await engine.execute(
            "INSERT INTO schema_version VALUES (%s, 0, 'a newer resetd')",
            (len(POSTGRES_MIGRATIONS) + 1,),
        )
        assert not await schema_is_current(engine)
        with pytest.raises(SchemaTooNew, match="newer than this resetd understands"):
            await migrate_to_newest(engine)
    finally:
        await engine.close()
