"""``resetd db copy``: resetd's SQLite database moved into PostgreSQL.

Every table of :data:`resetd.storage.tables.TABLES`, rows and ids as they are,
goes into one PostgreSQL transaction: either everything arrives or nothing
does. The SQLite file is migrated to the newest version first and read in one
read transaction (one snapshot); the PostgreSQL schema is migrated too. After
the rows, each identity column's sequence is set past the highest id, so the
rows resetd adds next do not collide with the copied ones.

A target that already holds rows in resetd's tables is refused unless the
caller asks to replace them (``TRUNCATE`` in the same transaction). Both
engines declare the same column kinds (REAL epoch seconds are DOUBLE PRECISION,
flags are integers on both), so values go across as they are; a value SQLite's
loose typing let into a column that PostgreSQL cannot hold is named, not
mangled.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.errors import LockNotAvailable

from ...db import Database
from ...db_url import redacted_url, scrub
from ..tables import TABLES, Kind, Table
from .engine import EngineError, PostgresEngine, Transaction
from .migrations import SchemaTooNew
from .startup import open_migrated

CHUNK = 1000  # rows read from SQLite at a time
# How long to wait for another session's hold on the target's tables: a resetd
# still running on them should be stopped, not waited for.
LOCK_TIMEOUT = "10s"


class CopyError(Exception):
    """Nothing was copied (the PostgreSQL transaction rolled back); the message
    is one line and names the target by its redacted url."""


class TargetNotEmpty(CopyError):
    """The target's tables already hold rows and replacing them was not asked for."""


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


async def copy_to_postgres(
    sqlite_path: str, url: str, *, schema: str = "public", replace: bool = False
) -> list[Copied]:
    """Copy resetd's SQLite database at ``sqlite_path`` into ``url``'s ``schema``
    (created and migrated when needed); the rows copied, table by table, in
    :data:`TABLES`' order. ``replace``: empty the target's tables first instead
    of refusing. Raises CopyError (TargetNotEmpty when refused)."""
    display = redacted_url(url)
    if not await asyncio.to_thread(Path(sqlite_path).is_file):
        # Database.open would create an empty one, and the copy would "succeed".
        raise CopyError(f"{sqlite_path}: no such file ([database] path names resetd's database)")
    try:
        source = await Database.open(sqlite_path)
    except (sqlite3.Error, RuntimeError) as exc:  # RuntimeError: a newer resetd's schema
        raise CopyError(f"{sqlite_path}: {exc}") from None
    try:
        try:
            target = await open_migrated(url, pool_size=1, schema=schema)
        except (EngineError, SchemaTooNew) as exc:
            raise CopyError(str(exc)) from None
        except psycopg.Error as exc:
            raise CopyError(f"{display}: migrating schema {schema}: {_reason(exc, url)}") from None
        try:
            return await _copy(source, target, replace)
        except LockNotAvailable:
            raise CopyError(
                f"{display}: another session holds resetd's tables in schema {schema}: "
                "stop every resetd using it, then copy again"
            ) from None
        except psycopg.Error as exc:
            raise CopyError(f"{display}: {_reason(exc, url)}") from None
        finally:
            await target.close()
    finally:
        await source.close()


async def _copy(source: Database, target: PostgresEngine, replace: bool) -> list[Copied]:
    where = f"{target.display} schema {target.schema}"
    async with target.transaction() as tx:
        await tx.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        names = sql.SQL(", ").join(sql.Identifier(t.name) for t in TABLES)
        # Held to the commit: nothing writes between the check and the copy.
        await tx.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(names))
        held = await _row_counts(tx)
        if held and not replace:
            listed = ", ".join(f"{name}: {n}" for name, n in held.items())
            raise TargetNotEmpty(f"{where} already holds rows ({listed})")
        if held:
            await tx.execute(sql.SQL("TRUNCATE {}").format(names))
        # One read transaction: every table from the same snapshot of the file.
        await source.conn.execute("BEGIN")
        try:
            copied = [Copied(t.name, await _copy_table(source, tx, t)) for t in TABLES]
        finally:
            await source.conn.execute("COMMIT")  # a read: nothing to undo
        for table in TABLES:
            if table.identity is not None:
                await _advance_sequence(tx, table, table.identity)
    return copied


async def _row_counts(tx: Transaction) -> dict[str, int]:
    """Resetd's tables that hold rows, with how many."""
    held = {}
    for table in TABLES:
        row = await tx.fetchone(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))
        )
        if row is not None and row[0]:
            held[table.name] = int(row[0])
    return held


async def _copy_table(source: Database, tx: Transaction, table: Table) -> int:
    """Stream ``table``'s rows from SQLite into PostgreSQL's COPY; how many."""
    columns = table.column_names
    convert = [_CONVERT[kind] for _name, kind in table.columns]
    # The names are TABLES' own, never input.
    select = f"SELECT {', '.join(columns)} FROM {table.name} ORDER BY {', '.join(table.key)}"
    copy_in = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    count = 0
    async with tx.conn.cursor() as cur, cur.copy(copy_in) as copy:
        async with source.conn.execute(select) as rows:
            while chunk := await rows.fetchmany(CHUNK):
                for row in chunk:
                    values = []
                    for name, fn, value in zip(columns, convert, row, strict=True):
                        try:
                            values.append(None if value is None else fn(value))
                        except ValueError as exc:
                            key = ", ".join(f"{k}={row[k]!r}" for k in table.key)
                            raise CopyError(
                                f"{table.name} row {key}: {name}: {exc}; correct it in "
                                "the SQLite file and copy again"
                            ) from None
                    await copy.write_row(values)
                    count += 1
    return count


async def _advance_sequence(tx: Transaction, table: Table, column: str) -> None:
    """The next id PostgreSQL hands out for ``table``: one past the highest copied
    (1 for an empty table)."""
    await tx.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max({}), 0) + 1, false) FROM {}"
        ).format(sql.Identifier(column), sql.Identifier(table.name)),
        (table.name, column),
    )


# --- values: SQLite's loose typing, PostgreSQL's strict one ---------------------


def _integer(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"expected an integer, found {type(value).__name__} {value!r:.40}")


def _real(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    raise ValueError(f"expected a number, found {type(value).__name__} {value!r:.40}")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, found {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("holds a NUL character, which PostgreSQL's text cannot store")
    return value


def _blob(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # stored as text: its UTF-8 bytes are what was meant
        return value.encode()
    raise ValueError(f"expected bytes, found {type(value).__name__}")


_CONVERT: dict[Kind, Callable[[Any], object]] = {
    "integer": _integer,
    "real": _real,
    "text": _text,
    "blob": _blob,
}


def _reason(exc: psycopg.Error, url: str) -> str:
    """The server's or libpq's message, one line, any password hidden."""
    return " ".join(scrub(str(exc), url).split())
