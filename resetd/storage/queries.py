"""Statements both engines run alike: the SQL written once, each engine's placeholder in it.

SQLite (:class:`resetd.db.Database`) and PostgreSQL
(:class:`~.postgres.engine.PostgresEngine`) both run one statement in a
transaction of its own with ``execute``, ``fetchone`` and ``fetchall``, and
both give rows read by position or by column name. Where a store's SQL is
the same on both but for the placeholder (``?``, ``%s``), it is written once
with ``{}`` for each parameter (:func:`marked`) and served by one class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..users import normalize
from .accounts import User
from .outbox import RelayStatus


class ResultRow(Protocol):
    def __getitem__(self, key: int | str, /) -> Any: ...


class Queries(Protocol):
    """What both engines' databases answer (positional arguments only: the
    engines name them differently)."""

    async def execute(self, sql: str, params: Sequence[Any] = (), /) -> int: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = (), /) -> ResultRow | None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = (), /) -> Sequence[ResultRow]: ...


def marked(sql: str, mark: str) -> str:
    """``sql`` with its ``{}`` as the engine's placeholder ``mark`` (``?`` or ``%s``)."""
    return sql.replace("{}", mark)


_SAVE_STATUS = (
    "INSERT INTO relay_status (id, relay, state, since, error, hint) "
    "VALUES (1, {}, {}, {}, {}, {}) ON CONFLICT (id) DO UPDATE SET relay = excluded.relay, "
    "state = excluded.state, since = excluded.since, error = excluded.error, "
    "hint = excluded.hint"
)


class RelayStatusRows:
    """The ``relay_status`` table: one row (the last instance to see the relay
    change wrote it)."""

    def __init__(self, db: Queries, mark: str) -> None:
        self.db = db
        self._save = marked(_SAVE_STATUS, mark)

    async def save(self, relay: str, status: RelayStatus) -> None:
        await self.db.execute(
            self._save,
            (relay, status.state, status.since, status.error[:500], status.hint[:500]),
        )

    async def load(self) -> tuple[str, RelayStatus] | None:
        row = await self.db.fetchone(
            "SELECT relay, state, since, error, hint FROM relay_status WHERE id = 1"
        )
        if row is None:
            return None
        return row["relay"], RelayStatus(row["state"], row["since"], row["error"], row["hint"])

    async def clear(self) -> None:
        await self.db.execute("DELETE FROM relay_status")


def user_of(row: ResultRow | None) -> User | None:
    """The account in a row of ``users`` (USER_COLUMNS), if any."""
    if row is None:
        return None
    return User(int(row["id"]), row["username"], row["email"], row["password_hash"])


USER_COLUMNS = "id, username, email, password_hash"


class UserReads:
    """The lookups of resetd's own ``users`` table, the same on both engines (each
    engine's store adds how it writes)."""

    def __init__(self, db: Queries, mark: str) -> None:
        self._db = db
        self._get = marked(f"SELECT {USER_COLUMNS} FROM users WHERE id = {{}}", mark)
        self._by_email = marked(f"SELECT {USER_COLUMNS} FROM users WHERE email_norm = {{}}", mark)
        self._by_login = marked(
            f"SELECT {USER_COLUMNS} FROM users WHERE username_norm = {{}} OR email_norm = {{}} "
            "ORDER BY username_norm = {} DESC LIMIT 1",
            mark,
        )

    async def get(self, user_id: int) -> User | None:
        return user_of(await self._db.fetchone(self._get, (user_id,)))

    async def find_by_email(self, email_norm: str, typed: str | None = None) -> User | None:
        """Look up by an already-normalised address (see :func:`~resetd.users.normalize`);
        ``email_norm`` is UNIQUE here, so ``typed`` never has to choose."""
        return user_of(await self._db.fetchone(self._by_email, (email_norm,)))

    async def find_by_login(self, login: str) -> User | None:
        """Username or email, as the login form accepts either."""
        key = normalize(login)
        return user_of(await self._db.fetchone(self._by_login, (key, key, key)))

    async def list(self) -> list[User]:
        rows = await self._db.fetchall(f"SELECT {USER_COLUMNS} FROM users ORDER BY id")
        return [u for u in map(user_of, rows) if u is not None]
