"""resetd's own ``users`` table on PostgreSQL (see :mod:`resetd.storage.accounts`)."""

from __future__ import annotations

from collections.abc import Callable

from psycopg.errors import UniqueViolation

from ...users import normalize, username_problem
from ..accounts import DuplicateUser, User
from ..queries import USER_COLUMNS, UserReads, user_of
from .clock import NOW
from .engine import PostgresEngine, Transaction

# hash_kind (resetd.passwords) in SQL, so that a table of any size is grouped
# by the server: $argon2…$v=…$params, $2b$12 (any other $-format), or the part
# of a Werkzeug hash before its salt.
_KIND = (
    "left(CASE"
    " WHEN password_hash LIKE '$argon2%%' AND split_part(password_hash, '$', 3) LIKE 'v=%%'"
    "  THEN array_to_string((string_to_array(password_hash, '$'))[1:4], '$')"
    " WHEN password_hash LIKE '$%%'"
    "  THEN array_to_string((string_to_array(password_hash, '$'))[1:3], '$')"
    " ELSE split_part(password_hash, '$', 1) END, 80)"
)


class PostgresUsers(UserReads):
    """Accounts kept in resetd's own database."""

    def __init__(self, engine: PostgresEngine) -> None:
        super().__init__(engine, "%s")
        self.engine = engine

    async def add(self, email: str, username: str, password_hash: str) -> User:
        """Create an account. Raises DuplicateUser naming the clashing field, and
        ValueError when :func:`username_problem` finds one (the username is stored
        trimmed)."""
        problem = username_problem(username)
        if problem is not None:
            raise ValueError(f"username {problem}")
        username = username.strip()
        email_norm, username_norm = normalize(email), normalize(username)
        by_email = DuplicateUser(f"a user with email {email!r} already exists")
        by_username = DuplicateUser(f"a user with username {username!r} already exists")
        try:
            async with self.engine.transaction() as tx:
                clash = await tx.fetchone(
                    "SELECT email_norm FROM users WHERE email_norm = %s OR username_norm = %s "
                    "LIMIT 1",
                    (email_norm, username_norm),
                )
                if clash is not None:
                    raise by_email if clash["email_norm"] == email_norm else by_username
                row = await tx.fetchone(
                    "INSERT INTO users (username, username_norm, email, email_norm,"
                    " password_hash, created_at, updated_at)"
                    f" VALUES (%s, %s, %s, %s, %s, {NOW}, {NOW}) RETURNING id",
                    (username, username_norm, email, email_norm, password_hash),
                )
        except UniqueViolation as exc:
            # Another instance added the same account between the look and the insert.
            constraint = exc.diag.constraint_name or ""
            raise (by_email if "email" in constraint else by_username) from None
        assert row is not None
        return User(int(row[0]), username, email, password_hash)

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]:
        """Normalised address → its account (one at most here, as ``email_norm`` is
        UNIQUE), for the addresses that have one."""
        if not email_norms:
            return {}
        rows = await self.engine.fetchall(
            f"SELECT {USER_COLUMNS}, email_norm FROM users WHERE email_norm = ANY(%s)",
            (list(email_norms),),
        )
        return {r["email_norm"]: [u] for r in rows if (u := user_of(r)) is not None}

    async def set_password_hash(self, user_id: int, new_hash: str) -> None:
        """Unconditional change (CLI, transparent re-hash on login)."""
        await self.engine.execute(
            f"UPDATE users SET password_hash = %s, updated_at = {NOW} WHERE id = %s",
            (new_hash, user_id),
        )

    async def upgrade_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """Transparent re-hash on login; a no-op if the password changed meanwhile."""
        return await self.replace_password_hash(user_id, old_hash, new_hash)

    async def replace_password_hash(
        self,
        user_id: int,
        old_hash: str,
        new_hash: str,
        *,
        within: Transaction | None = None,
    ) -> bool:
        """Swap the hash only if it is still ``old_hash`` — inside ``within`` (the
        caller's transaction on resetd's database) when given.

        Returns False when the password changed meanwhile (the token's binding is
        stale). Two concurrent swaps from one ``old_hash``: the second waits for
        the first's row lock, then finds the hash changed.
        """
        if within is None:
            async with self.engine.transaction() as tx:
                return await self.replace_password_hash(user_id, old_hash, new_hash, within=tx)
        changed = await within.execute(
            f"UPDATE users SET password_hash = %s, updated_at = {NOW} "
            "WHERE id = %s AND password_hash = %s",
            (new_hash, user_id, old_hash),
        )
        return changed == 1

    async def hash_samples(self, kind_of: Callable[[str], str], limit: int = 16) -> list[str]:
        """One hash of each kind: grouped by the server with :data:`_KIND`, then
        by ``kind_of``, so a ``kind_of`` coarser than hash_kind still gets one each."""
        rows = await self.engine.fetchall(
            f"SELECT MIN(password_hash) AS h FROM users GROUP BY {_KIND} ORDER BY 1"
        )
        samples: dict[str, str] = {}
        for row in rows:
            samples.setdefault(kind_of(str(row["h"])), str(row["h"]))
        return list(samples.values())[:limit]
