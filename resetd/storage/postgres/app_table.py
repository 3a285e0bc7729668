"""An app's users table on PostgreSQL: finding it and checking it against ``[users]``.

The names in ``[users]`` are plain identifiers. PostgreSQL folds an unquoted
name to lower case, so a table created as ``CREATE TABLE User`` is ``user``;
each name here is looked up exactly first, then as PostgreSQL would fold it.
Column types are taken generously: an id of any integer type, or text holding
decimal integers; addresses, usernames and hashes of any string type
(``text``, ``varchar``, ``char``, ``citext``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import ConfigError, UsersConfig
from ...db_url import redacted_url
from .engine import Transaction

_INTEGERS = ("int2", "int4", "int8")
# pg_type.typcategory of the string types; a domain carries its base type's.
_STRING = "S"

_SCHEMA = """
    SELECT nspname FROM pg_catalog.pg_namespace
    WHERE nspname = %s OR nspname = lower(%s)
    ORDER BY nspname = %s DESC LIMIT 1
"""
_TABLE = """
    SELECT c.oid, c.relname FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'f')
      AND (c.relname = %s OR c.relname = lower(%s))
    ORDER BY c.relname = %s DESC LIMIT 1
"""
_COLUMNS = """
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS declared,
           t.typcategory AS category, b.typname AS base
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    JOIN pg_catalog.pg_type b ON b.oid = CASE t.typtype WHEN 'd' THEN t.typbasetype ELSE t.oid END
    WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
"""


@dataclass(frozen=True)
class Column:
    name: str  # as the catalog spells it
    declared: str  # as format_type() shows it: "integer", "character varying(120)"
    category: str
    base: str  # the base type's name for a domain

    @property
    def is_integer(self) -> bool:
        return self.base in _INTEGERS

    @property
    def is_text(self) -> bool:
        return self.category == _STRING


@dataclass(frozen=True)
class AppTable:
    """Where the mapping points, every name as the catalog spells it."""

    schema: str
    table: str
    id: Column
    email: Column
    username: Column
    password_hash: Column


async def find_table(tx: Transaction, users: UsersConfig) -> AppTable:
    """The table and columns ``users`` maps, checked; raises ConfigError naming
    the first key that does not fit (the url shown without its password)."""
    where = redacted_url(users.url)
    row = await tx.fetchone(_SCHEMA, (users.schema,) * 3)
    if row is None:
        raise ConfigError(f"[users] schema: no schema {users.schema!r} in {where}")
    schema = str(row[0])
    row = await tx.fetchone("SELECT has_schema_privilege(%s, 'USAGE')", (schema,))
    if row is None or not row[0]:
        raise ConfigError(
            f"[users] schema: the role in [users] url has no USAGE privilege on schema "
            f"{schema!r} (GRANT USAGE ON SCHEMA …)"
        )
    row = await tx.fetchone(_TABLE, (schema, *(users.table,) * 3))
    if row is None:
        raise ConfigError(
            f"[users] table: no table {users.table!r} in schema {schema!r} of {where}"
        )
    table = str(row["relname"])
    found = [
        Column(str(r["name"]), str(r["declared"]), str(r["category"]), str(r["base"]))
        for r in await tx.fetchall(_COLUMNS, (row["oid"],))
    ]
    columns = {c.name: c for c in found}
    picked: dict[str, Column] = {}
    for key in ("id_column", "email_column", "username_column", "password_hash_column"):
        wanted = getattr(users, key)
        column = columns.get(wanted) or columns.get(wanted.lower())
        if column is None:
            raise ConfigError(
                f"[users] {key}: table {table!r} has no column {wanted!r} "
                f"(it has: {', '.join(sorted(columns))})"
            )
        if key == "id_column":
            if not (column.is_integer or column.is_text):
                raise ConfigError(
                    f"[users] {key}: column {column.name!r} is {column.declared}, "
                    "expected an integer or text"
                )
        elif not column.is_text:
            raise ConfigError(
                f"[users] {key}: column {column.name!r} is {column.declared}, expected text"
            )
        picked[key] = column
    for key, column in picked.items():
        await _check_privilege(tx, row["oid"], key, column, table, "SELECT")
    await _check_privilege(
        tx, row["oid"], "password_hash_column", picked["password_hash_column"], table, "UPDATE"
    )
    return AppTable(
        schema,
        table,
        picked["id_column"],
        picked["email_column"],
        picked["username_column"],
        picked["password_hash_column"],
    )


async def _check_privilege(
    tx: Transaction, oid: int, key: str, column: Column, table: str, privilege: str
) -> None:
    """A column resetd must read (or write) that the url's role may not: found at
    start, not at the first reset."""
    row = await tx.fetchone(
        "SELECT has_column_privilege(%s::oid, %s, %s)", (oid, column.name, privilege)
    )
    if row is None or not row[0]:
        raise ConfigError(
            f"[users] {key}: the role in [users] url has no {privilege} privilege on column "
            f"{column.name!r} of table {table!r} (GRANT {privilege} ({column.name}) ON …)"
        )
