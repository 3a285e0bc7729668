"""resetd's own account store: the ``users`` table.

Addresses and usernames are compared in a normalised form (trim, NFKC,
case-fold) kept in their own UNIQUE columns, so two spellings of one address
can never be two accounts; mail always goes to the stored ``email``, never to
what somebody typed. An application's table may hold several spellings
(``Alice@example.com`` and ``alice@example.com``): :func:`pick` then chooses the
account whose stored value is exactly what was typed, and none on a true tie.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiosqlite

from .db import Database, Row


class AccountStore(Protocol):
    """Where accounts live: resetd's own table, or a host application's."""

    async def get(self, user_id: int) -> User | None: ...

    async def find_by_email(self, email_norm: str, typed: str | None = None) -> User | None: ...

    async def find_by_login(self, login: str) -> User | None: ...

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]: ...

    async def upgrade_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool: ...

    async def hash_samples(self, kind_of: Callable[[str], str], limit: int = 16) -> list[str]:
        """One stored hash of each kind ``kind_of`` tells apart (at most ``limit``)."""
        ...

    async def replace_password_hash(
        self,
        user_id: int,
        old_hash: str,
        new_hash: str,
        *,
        within: aiosqlite.Connection | None = None,
    ) -> bool: ...


class DuplicateUser(Exception):
    """The email or username is already taken; the message says which."""


# As the Flask Mega-Tutorial's ``user.username`` column (String(64)); a name this
# long still fits a mail's To: line and every page.
MAX_USERNAME = 64


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be an account's name, or None when it can.

    Printable characters only (``str.isprintable``: no control characters such as
    CR or LF, which once reached mail headers, no format or separator characters
    other than the space), 1 to :data:`MAX_USERNAME` characters once trimmed.
    """
    name = username.strip()
    if not name:
        return "must not be empty"
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        return f"must not contain control or invisible characters (found U+{ord(bad):04X})"
    if len(name) > MAX_USERNAME:
        return f"must be at most {MAX_USERNAME} characters (got {len(name)})"
    return None


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    password_hash: str


def normalize(value: str) -> str:
    """Trim, NFKC-normalise and case-fold an email address or username."""
    return unicodedata.normalize("NFKC", value.strip()).casefold()


def pick(
    candidates: Sequence[User], typed: str | None, stored: Callable[[User], str]
) -> User | None:
    """The one account meant by ``typed`` among those sharing its normalised form.

    One candidate is the account. Among several, the one whose ``stored`` value
    (its email or username) equals what was typed, both trimmed; None when none
    or more than one does (a true tie: nobody can tell which account was meant,
    so nothing is sent and nobody signs in). ``typed`` None (a request queued
    before resetd kept what was typed) picks only a lone candidate.
    """
    if len(candidates) == 1:
        return candidates[0]
    if typed is None:
        return None
    want = typed.strip()
    exact = [u for u in candidates if stored(u).strip() == want]
    return exact[0] if len(exact) == 1 else None


def fingerprint(user: User) -> str:
    """A short digest of what a reset token and a session are bound to.

    It changes whenever the password hash or the email changes (by any route,
    including the host application writing its own table), which kills every
    outstanding token and signed-in session of that user.
    """
    material = f"{user.id}\x00{user.password_hash}\x00{normalize(user.email)}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def same_fingerprint(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _user(row: Row | None) -> User | None:
    if row is None:
        return None
    return User(int(row["id"]), row["username"], row["email"], row["password_hash"])


_COLUMNS = "id, username, email, password_hash"


class UserStore:
    """Accounts kept in resetd's own database."""

    def __init__(self, db: Database) -> None:
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

    async def get(self, user_id: int) -> User | None:
        return _user(
            await self.db.fetchone(f"SELECT {_COLUMNS} FROM users WHERE id = ?", (user_id,))
        )

    async def find_by_email(self, email_norm: str, typed: str | None = None) -> User | None:
        """Look up by an already-normalised address (see :func:`normalize`);
        ``email_norm`` is UNIQUE here, so ``typed`` never has to choose."""
        return _user(
            await self.db.fetchone(
                f"SELECT {_COLUMNS} FROM users WHERE email_norm = ?", (email_norm,)
            )
        )

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]:
        """Normalised address → its account (one at most here, as ``email_norm`` is
        UNIQUE), for the addresses that have one."""
        if not email_norms:
            return {}
        marks = ", ".join("?" for _ in email_norms)
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS}, email_norm FROM users WHERE email_norm IN ({marks})", email_norms
        )
        return {r["email_norm"]: [u] for r in rows if (u := _user(r)) is not None}

    async def find_by_login(self, login: str) -> User | None:
        """Username or email, as the login form accepts either."""
        key = normalize(login)
        return _user(
            await self.db.fetchone(
                f"SELECT {_COLUMNS} FROM users WHERE username_norm = ? OR email_norm = ? "
                "ORDER BY username_norm = ? DESC LIMIT 1",
                (key, key, key),
            )
        )

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

    async def list(self) -> list[User]:
        rows = await self.db.fetchall(f"SELECT {_COLUMNS} FROM users ORDER BY id")
        return [u for u in map(_user, rows) if u is not None]
