"""resetd's own ``users`` table on SQLite (see :mod:`resetd.storage.accounts`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiosqlite

from ...db import Database
from ...users import normalize, username_problem
from ..accounts import DuplicateUser, User
from ..queries import USER_COLUMNS, UserReads, user_of


class SqliteUsers(UserReads):
    """Accounts kept in resetd's own database."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, "?")
        self.db = db

    async def add(self, email: str, username: str, password_hash: str) -> User:
        """Create an account. Raises DuplicateUser naming the clashing field, and
        ValueError when :func:`username_problem` finds one (the username is stored
        trimmed)."""
        problem = username_problem(username)
        if problem is not None:
            raise ValueError(f"username {problem}")
        username = username.strip()
        now = time.time()
        email_norm, username_norm = normalize(email), normalize(username)
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT email_norm, username_norm FROM users "
                "WHERE email_norm = ? OR username_norm = ?",
                (email_norm, username_norm),
            ) as cur:
                clash = await cur.fetchone()
            if clash is not None:
                if clash["email_norm"] == email_norm:
                    raise DuplicateUser(f"a user with email {email!r} already exists")
                raise DuplicateUser(f"a user with username {username!r} already exists")
            cur = await conn.execute(
                "INSERT INTO users (username, username_norm, email, email_norm, password_hash,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (username, username_norm, email, email_norm, password_hash, now, now),
            )
            user_id = cur.lastrowid
        assert user_id is not None
        return User(user_id, username, email, password_hash)

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]:
        """Normalised address → its account (one at most here, as ``email_norm`` is
        UNIQUE), for the addresses that have one."""
        if not email_norms:
            return {}
        marks = ", ".join("?" for _ in email_norms)
        rows = await self.db.fetchall(
            f"SELECT {USER_COLUMNS}, email_norm FROM users WHERE email_norm IN ({marks})",
            email_norms,
        )
        return {r["email_norm"]: [u] for r in rows if (u := user_of(r)) is not None}

    async def set_password_hash(self, user_id: int, new_hash: str) -> None:
        """Unconditional change (CLI, transparent re-hash on login)."""
        await self.db.execute(
            "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
            (new_hash, time.time(), user_id),
        )

    async def upgrade_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """Transparent re-hash on login; a no-op if the password changed meanwhile."""
        async with self.db.transaction() as conn:
            return await self.replace_password_hash(user_id, old_hash, new_hash, within=conn)

    async def replace_password_hash(
        self,
        user_id: int,
        old_hash: str,
        new_hash: str,
        *,
        within: aiosqlite.Connection | None = None,
    ) -> bool:
        """Swap the hash only if it is still ``old_hash`` — inside ``within`` (the
        caller's transaction on resetd's database) when given.

        Returns False when the password changed meanwhile (the token's binding is stale).
        """
        if within is None:
            async with self.db.transaction() as conn:
                return await self.replace_password_hash(user_id, old_hash, new_hash, within=conn)
        cur = await within.execute(
            "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ? AND password_hash = ?",
            (new_hash, time.time(), user_id, old_hash),
        )
        return cur.rowcount == 1

    async def hash_samples(self, kind_of: Callable[[str], str], limit: int = 16) -> list[str]:
        await self.db.conn.create_function("resetd_hash_kind", 1, kind_of, deterministic=True)
        rows = await self.db.fetchall(
            "SELECT MIN(password_hash) AS h FROM users "
            "GROUP BY resetd_hash_kind(password_hash) LIMIT ?",
            (limit,),
        )
        return [str(r["h"]) for r in rows]
