"""The statements over an app's users table, composed once from its checked names.

Every name is a :class:`psycopg.sql.Identifier` (quoted by psycopg, never
formatted into the text), values are ``%s`` parameters.
"""

from __future__ import annotations

from psycopg import sql

from .app_table import AppTable, Column

# What str.strip() removes from an ASCII string.
ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_ASCII = sql.SQL(r"E'^[\\x01-\\x7f]*$'")

# passwords.hash_kind() in SQL, so that one hash of each kind comes back
# rather than every row's (the store regroups with the kind_of it is given).
_HASH_KIND = sql.SQL(
    """CASE
    WHEN left(h, 7) = '$argon2' THEN left(array_to_string((string_to_array(h, '$'))
        [1:CASE WHEN left(split_part(h, '$', 3), 2) = 'v=' THEN 4 ELSE 3 END], '$'), 80)
    WHEN left(h, 1) = '$' THEN left(array_to_string((string_to_array(h, '$'))[1:3], '$'), 80)
    ELSE left(split_part(h, '$', 1), 80)
END"""
)


def _name(column: Column) -> sql.Identifier:
    return sql.Identifier(column.name)


class Statements:
    """``select`` (id, username, email, password_hash), ``by_id`` (one
    parameter: the id), ``update`` (new hash, id, old hash), ``samples``
    (limit), and :meth:`candidates`."""

    def __init__(self, t: AppTable) -> None:
        table = sql.Identifier(t.schema, t.table)
        pw = _name(t.password_hash)
        self.select = sql.SQL(
            "SELECT {id} AS id, {username}::text AS username, {email}::text AS email, "
            "{pw}::text AS password_hash FROM {table}"
        ).format(
            id=_name(t.id), username=_name(t.username), email=_name(t.email), pw=pw, table=table
        )
        self.by_id = self.select + sql.SQL(" WHERE {id} = %s").format(id=_name(t.id))
        self.update = sql.SQL(
            # The old hash compared byte for byte, whatever the column's collation.
            'UPDATE {table} SET {pw} = %s WHERE {id} = %s AND {pw}::text COLLATE "C" = %s'
        ).format(table=table, pw=pw, id=_name(t.id))
        self.samples = sql.SQL(
            'SELECT min(h) FROM (SELECT {pw}::text COLLATE "C" AS h FROM {table} '
            "WHERE {pw} IS NOT NULL) s GROUP BY {kind} LIMIT %s"
        ).format(pw=pw, table=table, kind=_HASH_KIND)

    def candidates(self, column: Column) -> sql.Composed:
        """Rows that may hold one of the keys in ``column`` (parameters:
        :data:`ASCII_SPACE`, the list of normalised keys): a value of ASCII
        whose trimmed lower case is a key, and every value holding anything
        else, which only resetd's normalize() can compare."""
        # COLLATE "C": lower() of ASCII only, whatever the locale (no Turkish
        # dotless i), and regular expressions even on a column whose collation
        # is case-insensitive (nondeterministic), which PostgreSQL refuses them.
        col = sql.SQL('({}::text COLLATE "C")').format(_name(column))
        where = sql.SQL(
            " WHERE ({col} ~ {ascii} AND lower(btrim({col}, %s)) = ANY(%s)) OR {col} !~ {ascii}"
        ).format(col=col, ascii=_ASCII)
        return self.select + where
