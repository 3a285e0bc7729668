"""Accounts kept in a host application's SQLite database (``[users] store = "sqlite"``).

resetd never alters that schema. It reads the configured table and columns
and writes only the password column, in one short transaction, for the one
user whose token was used — and only if the stored hash is still the one the
token was bound to. Everything else resetd needs (token ledger, limits,
audit, outbox) stays in resetd's own database. Because tokens and sessions
are bound to a fingerprint of the *stored* hash, a password the app changes
itself kills outstanding links and sessions too.

The app's table is not resetd's to tidy: it may hold two spellings of one
address (its unique index is case-sensitive), which :func:`~resetd.users.pick`
resolves by what was typed, and bytes that are not valid UTF-8, which must
not stop every lookup (a row whose address cannot be decoded is skipped).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiosqlite

from ...config import ConfigError, UsersConfig
from ...db import Database, Row
from ...users import User, normalize, pick

log = logging.getLogger(__name__)

_TEXT_TYPES = ("CHAR", "TEXT", "CLOB", "VARCHAR", "STRING", "")
_INT_TYPES = ("INT",)


def _q(identifier: str) -> str:
    """Quote an identifier already checked against config's plain-identifier rule."""
    return '"' + identifier.replace('"', '""') + '"'


class SqliteAppUsers:
    """An :class:`~resetd.users.AccountStore` over an app's ``user`` table."""

    def __init__(self, cfg: UsersConfig, conn: aiosqlite.Connection) -> None:
        self.cfg = cfg
        self.conn = conn
        # Serialised BEGIN IMMEDIATE … COMMIT on the app's file, as for resetd's own.
        self._db = Database(conn, cfg.path)
        c = cfg
        self._select = (
            f"SELECT {_q(c.id_column)} AS id, {_q(c.username_column)} AS username, "
            f"{_q(c.email_column)} AS email, {_q(c.password_hash_column)} AS password_hash "
            f"FROM {_q(c.table)}"
        )
        self._email_key = _norm_sql(c.email_column)
        self._username_key = _norm_sql(c.username_column)

    @classmethod
    async def open(cls, cfg: UsersConfig) -> SqliteAppUsers:
        """Connect and validate the mapping; raises ConfigError naming what is missing."""
        path = Path(cfg.path)
        if not await asyncio.to_thread(path.is_file):
            raise ConfigError(f"[users] path: no database file at {cfg.path!r}")
        conn = await aiosqlite.connect(cfg.path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            # Text that is not valid UTF-8 would make sqlite3 raise on every query
            # returning it; it comes back with its bad bytes as lone surrogates, and
            # _user() refuses rows whose address or hash holds any.
            conn.text_factory = partial(str, encoding="utf-8", errors="surrogateescape")
            await conn.execute("PRAGMA busy_timeout=5000")
            async with conn.execute("PRAGMA encoding") as cur:
                row = await cur.fetchone()
            encoding = str(row[0]) if row else "UTF-8"
            # normalize() in SQL: NFKC + case-fold, which SQLite's lower() cannot do.
            # It is given the text's bytes (see _norm_sql): handed text that is not
            # valid UTF-8, sqlite3 fails the whole statement before calling it.
            norm = partial(_norm, encoding=encoding.lower())
            await conn.create_function("resetd_norm", 1, norm, deterministic=True)
            await cls._validate(cfg, conn)
        except BaseException:
            await conn.close()
            raise
        return cls(cfg, conn)

    @staticmethod
    async def _validate(cfg: UsersConfig, conn: aiosqlite.Connection) -> None:
        try:
            async with conn.execute(f"PRAGMA table_info({_q(cfg.table)})") as cur:
                cols = {r["name"]: str(r["type"]).upper() for r in await cur.fetchall()}
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"[users] path: {cfg.path!r} is not a usable SQLite file: {exc}"
            ) from None
        if not cols:
            raise ConfigError(f"[users] table: no table {cfg.table!r} in {cfg.path!r}")
        wanted = {
            "id_column": (cfg.id_column, _INT_TYPES),
            "email_column": (cfg.email_column, _TEXT_TYPES),
            "username_column": (cfg.username_column, _TEXT_TYPES),
            "password_hash_column": (cfg.password_hash_column, _TEXT_TYPES),
        }
        for key, (column, types) in wanted.items():
            if column not in cols:
                raise ConfigError(
                    f"[users] {key}: table {cfg.table!r} has no column {column!r} "
                    f"(it has: {', '.join(sorted(cols))})"
                )
            declared = cols[column]
            if not any(t in declared for t in types) and declared != "":
                kind = "an integer" if types is _INT_TYPES else "text"
                raise ConfigError(
                    f"[users] {key}: column {column!r} is {declared}, expected {kind}"
                )

    async def close(self) -> None:
        await self.conn.close()

    async def _all(self, where: str, params: tuple[object, ...]) -> list[User]:
        async with self.conn.execute(
            f"{self._select} WHERE {where} LIMIT {MAX_CANDIDATES}", params
        ) as cur:
            rows = list(await cur.fetchall())
        return [u for u in map(_user, rows) if u is not None]

    async def get(self, user_id: int) -> User | None:
        found = await self._all(f"{_q(self.cfg.id_column)} = ?", (user_id,))
        return found[0] if len(found) == 1 else None

    async def find_by_email(self, email_norm: str, typed: str | None = None) -> User | None:
        """The account for ``email_norm``; among several spellings, the one stored
        exactly as ``typed`` (see :func:`~resetd.users.pick`)."""
        found = await self._all(f"{self._email_key} = ?", (email_norm,))
        return _chosen(found, typed, "address", lambda u: u.email)

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]:
        """One scan for a batch: normalised address → every account stored under a
        spelling of it (the caller picks with :func:`~resetd.users.pick`)."""
        if not email_norms:
            return {}
        marks = ", ".join("?" for _ in email_norms)
        async with self.conn.execute(
            f"{self._select} WHERE {self._email_key} IN ({marks})", email_norms
        ) as cur:
            rows = list(await cur.fetchall())
        found: dict[str, list[User]] = {}
        for user in map(_user, rows):
            if user is not None:
                found.setdefault(normalize(user.email), []).append(user)
        return found

    async def find_by_login(self, login: str) -> User | None:
        """By username, else by email; each time the exact spelling wins among
        accounts whose names differ only in case or width."""
        key = normalize(login)
        named = await self._all(f"{self._username_key} = ?", (key,))
        user = _chosen(named, login, "username", lambda u: u.username)
        # Both scans every time: stopping after a username match made a known
        # username answer one table scan sooner than anything else.
        by_email = await self.find_by_email(key, login)
        return user or by_email

    async def hash_samples(self, kind_of: Callable[[str], str], limit: int = 16) -> list[str]:
        c = self.cfg
        col = _q(c.password_hash_column)
        await self.conn.create_function(
            "resetd_hash_kind", 1, lambda v: kind_of(v) if isinstance(v, str) else None
        )
        async with self.conn.execute(
            f"SELECT MIN({col}) AS h FROM {_q(c.table)} WHERE typeof({col}) = 'text' "
            f"GROUP BY resetd_hash_kind({col}) LIMIT ?",
            (limit,),
        ) as cur:
            return [str(r["h"]) for r in await cur.fetchall()]

    async def upgrade_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        return await self.replace_password_hash(user_id, old_hash, new_hash)

    async def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """One short write to the app's table, only if the hash is unchanged.

        Inside a password change (:class:`~resetd.storage.Transaction`) it is
        made while resetd's own transaction is open, which commits after this
        returns True, or rolls back (un-consuming the token) when it fails.
        """
        c = self.cfg
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                f"UPDATE {_q(c.table)} SET {_q(c.password_hash_column)} = ? "
                f"WHERE {_q(c.id_column)} = ? AND {_q(c.password_hash_column)} = ?",
                (new_hash, user_id, old_hash),
            )
            return cur.rowcount == 1


# Accounts one key may match (two spellings are the realistic case); bounds a scan
# of a table where many rows share one value.
MAX_CANDIDATES = 16


def _norm_sql(column: str) -> str:
    """resetd_norm() over the bytes of a text value; other types match nothing."""
    col = _q(column)
    return f"resetd_norm(CASE typeof({col}) WHEN 'text' THEN CAST({col} AS BLOB) END)"


def _norm(value: object, encoding: str = "utf-8") -> str | None:
    if not isinstance(value, bytes):
        return None
    return normalize(value.decode(encoding, "replace"))


def _chosen(
    found: list[User], typed: str | None, what: str, stored: Callable[[User], str]
) -> User | None:
    user = pick(found, typed, stored)
    if user is None and len(found) > 1:
        log.warning(
            "users: %d accounts share one normalised %s and none is stored exactly as "
            "typed; treating it as unknown",
            len(found),
            what,
        )
    return user


def _valid(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _user(row: Row) -> User | None:
    """An account from a row, or None when the row cannot be one: a non-integer id,
    no text hash, or an address or hash holding bytes that are not valid UTF-8."""
    if not isinstance(row["id"], int) or not isinstance(row["password_hash"], str):
        return None
    email = str(row["email"] or "")
    if not (_valid(email) and _valid(row["password_hash"])):
        log.warning("users: account %d: address or hash is not UTF-8; skipped", row["id"])
        return None
    username = str(row["username"] or "")
    if not _valid(username):
        username = username.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return User(row["id"], username, email, row["password_hash"])
