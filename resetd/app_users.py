"""Accounts kept in a host application's SQLite database (``[users] store = "sqlite"``).

resetd never alters that schema. It reads the configured table and columns
and writes only the password column, in one short transaction, for the one
user whose token was used — and only if the stored hash is still the one the
token was bound to. Everything else resetd needs (token ledger, limits,
audit, outbox) stays in resetd's own database. Because tokens and sessions
are bound to a fingerprint of the *stored* hash, a password the app changes
itself kills outstanding links and sessions too.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiosqlite

from .config import ConfigError, UsersConfig
from .db import Database, Row
from .users import User, normalize

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

    @classmethod
    async def open(cls, cfg: UsersConfig) -> SqliteAppUsers:
        """Connect and validate the mapping; raises ConfigError naming what is missing."""
        path = Path(cfg.path)
        if not await asyncio.to_thread(path.is_file):
            raise ConfigError(f"[users] path: no database file at {cfg.path!r}")
        conn = await aiosqlite.connect(cfg.path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute("PRAGMA busy_timeout=5000")
            # normalize() in SQL: NFKC + case-fold, which SQLite's lower() cannot do.
            await conn.create_function("resetd_norm", 1, _norm, deterministic=True)
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

    async def _one(self, where: str, params: tuple[object, ...]) -> User | None:
        async with self.conn.execute(f"{self._select} WHERE {where} LIMIT 2", params) as cur:
            rows = list(await cur.fetchall())
        if len(rows) != 1:
            if len(rows) > 1:
                log.warning(
                    "users: %d accounts match one normalised key; treating as unknown", len(rows)
                )
            return None
        return _user(rows[0])

    async def get(self, user_id: int) -> User | None:
        return await self._one(f"{_q(self.cfg.id_column)} = ?", (user_id,))

    async def find_by_email(self, email_norm: str) -> User | None:
        return await self._one(f"resetd_norm({_q(self.cfg.email_column)}) = ?", (email_norm,))

    async def find_many_by_email(self, email_norms: list[str]) -> dict[str, User]:
        """One scan for a batch; an address matching two accounts matches none."""
        if not email_norms:
            return {}
        marks = ", ".join("?" for _ in email_norms)
        col = _q(self.cfg.email_column)
        async with self.conn.execute(
            f"{self._select} WHERE resetd_norm({col}) IN ({marks})", email_norms
        ) as cur:
            rows = list(await cur.fetchall())
        found: dict[str, User] = {}
        clashes: set[str] = set()
        for row in rows:
            user = _user(row)
            if user is None:
                continue
            norm = normalize(user.email)
            if norm in found:
                clashes.add(norm)
            found[norm] = user
        for norm in clashes:
            log.warning("users: two accounts share one normalised address; sending to neither")
            del found[norm]
        return found

    async def find_by_login(self, login: str) -> User | None:
        key = normalize(login)
        user = await self._one(f"resetd_norm({_q(self.cfg.username_column)}) = ?", (key,))
        # Both scans every time: stopping after a username match made a known
        # username answer one table scan sooner than anything else.
        by_email = await self.find_by_email(key)
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

    async def replace_password_hash(
        self,
        user_id: int,
        old_hash: str,
        new_hash: str,
        *,
        within: aiosqlite.Connection | None = None,
    ) -> bool:
        """One short write to the app's table, only if the hash is unchanged.

        ``within`` (resetd's own transaction) is left alone: it commits after this
        returns True, or rolls back (un-consuming the token) when this fails.
        """
        c = self.cfg
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                f"UPDATE {_q(c.table)} SET {_q(c.password_hash_column)} = ? "
                f"WHERE {_q(c.id_column)} = ? AND {_q(c.password_hash_column)} = ?",
                (new_hash, user_id, old_hash),
            )
            return cur.rowcount == 1


def _norm(value: object) -> str | None:
    return normalize(value) if isinstance(value, str) else None


def _user(row: Row) -> User | None:
    if not isinstance(row["id"], int) or not isinstance(row["password_hash"], str):
        return None
    return User(
        row["id"], str(row["username"] or ""), str(row["email"] or ""), row["password_hash"]
    )
