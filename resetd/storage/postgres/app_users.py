"""Accounts kept in a host application's PostgreSQL table (``[users] store = "postgresql"``).

The same contract as :class:`~resetd.storage.sqlite.app_users.SqliteAppUsers`:
resetd never alters the app's schema, reads the configured table and columns
(:mod:`.app_table` checks them at start, :mod:`.app_statements` holds the SQL)
and writes only the password column,
for the one user whose token was used, and only while the stored hash is still
the one the token was bound to.

When the table is in resetd's own database (``[users] url`` the same as
``[database] url``), the store shares resetd's engine, and the password change
writes the app's row inside resetd's transaction
(:meth:`PostgresAppUsers.replace_password_hash_in`): the token is consumed and
the hash replaced together, or neither. Elsewhere it keeps a small pool of its
own and each write is a short transaction of its own.

Addresses and usernames match as :func:`~resetd.users.normalize` compares them
(trim, NFKC, case-fold), which SQL cannot do exactly: PostgreSQL's ``lower()``
follows the database's locale (only ASCII under ``C``) and has no case-fold.
So a row of ASCII, whose normal form is its trimmed lower case, is matched
in SQL; every row holding other characters is a candidate, sent back
and compared in Python. Apps whose names are mostly ASCII pay one scan; an app
whose usernames are mostly not pays for sending those rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from ...config import ConfigError, UsersConfig
from ...users import User, normalize, pick
from .app_statements import ASCII_SPACE, Statements
from .app_table import AppTable, Column, find_table
from .engine import EngineError, PostgresEngine, Row, Transaction

log = logging.getLogger(__name__)

# Connections of the store's own pool, when the app's database is not resetd's:
# lookups and one write per password change.
POOL_SIZE = 2
# Accounts one key may match (two spellings are the realistic case), as on SQLite.
MAX_CANDIDATES = 16


def same_database(a: str, b: str) -> bool:
    """Whether two libpq urls name the same connection (same parameters, in
    whatever order or spelling libpq accepts)."""
    return conninfo_to_dict(a) == conninfo_to_dict(b)


class PostgresAppUsers:
    """An :class:`~resetd.storage.accounts.AccountStore` over an app's users table.

    ``shared``: True when the table is in the database of the engine given to
    :meth:`open`, which the store then uses (and leaves open on :meth:`close`).
    """

    def __init__(
        self, cfg: UsersConfig, engine: PostgresEngine, table: AppTable, *, shared: bool
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.table = table
        self.shared = shared
        self._text_ids = not table.id.is_integer
        self._sql = Statements(table)

    @classmethod
    async def open(
        cls, users: UsersConfig, *, engine: PostgresEngine | None = None
    ) -> PostgresAppUsers:
        """Connect and check the mapping.

        ``engine``: resetd's own; used when ``[users] url`` names its database
        (or is empty), otherwise a pool of :data:`POOL_SIZE` connections is
        opened to ``[users] url``. Raises ConfigError naming the key that does
        not fit, or ``[users] url`` when the database cannot be reached; no
        message holds the url's password.
        """
        url = users.url or (engine.url if engine is not None else "")
        if not url:
            raise ConfigError(
                '[users] url: required when store = "postgresql" and resetd\'s own '
                "database is not PostgreSQL"
            )
        users = replace(users, url=url, schema=users.schema or "public")
        shared = engine is not None and same_database(url, engine.url)
        if engine is not None and shared:
            own = engine
        else:
            try:
                own = await PostgresEngine.open(url, pool_size=POOL_SIZE, schema=users.schema)
            except EngineError as exc:
                raise ConfigError(f"[users] url: {exc}") from None
        try:
            async with own.transaction() as tx:
                table = await find_table(tx, users)
        except BaseException:
            if not shared:
                await own.close()
            raise
        return cls(users, own, table, shared=shared)

    async def close(self) -> None:
        """Close the store's own pool; a shared engine is its owner's to close."""
        if not self.shared:
            await self.engine.close()

    async def get(self, user_id: int) -> User | None:
        async with self.engine.transaction() as tx:
            rows = await tx.fetchall(self._sql.by_id, (self._id_param(user_id),))
        found = [u for u in map(_user, rows) if u is not None]
        return found[0] if len(found) == 1 else None

    async def find_by_email(self, email_norm: str, typed: str | None = None) -> User | None:
        """The account for ``email_norm``; among several spellings, the one stored
        exactly as ``typed`` (see :func:`~resetd.users.pick`)."""
        found = await self._matching(self.table.email, "email", [email_norm])
        return _chosen(found[:MAX_CANDIDATES], typed, "address", lambda u: u.email)

    async def find_all_by_email(self, email_norms: list[str]) -> dict[str, list[User]]:
        """One scan for a batch: normalised address → every account stored under a
        spelling of it (the caller picks with :func:`~resetd.users.pick`)."""
        if not email_norms:
            return {}
        found: dict[str, list[User]] = {}
        for user in await self._matching(self.table.email, "email", email_norms):
            found.setdefault(normalize(user.email), []).append(user)
        return found

    async def find_by_login(self, login: str) -> User | None:
        """By username, else by email; each time the exact spelling wins among
        accounts whose names differ only in case or width."""
        key = normalize(login)
        named = await self._matching(self.table.username, "username", [key])
        user = _chosen(named[:MAX_CANDIDATES], login, "username", lambda u: u.username)
        # Both scans every time, as on SQLite: stopping after a username match
        # made a known username answer one scan sooner than anything else.
        by_email = await self.find_by_email(key, login)
        return user or by_email

    async def hash_samples(self, kind_of: Callable[[str], str], limit: int = 16) -> list[str]:
        async with self.engine.transaction() as tx:
            rows = await tx.fetchall(self._sql.samples, (limit,))
        samples: dict[str, str] = {}
        for row in rows:
            stored = str(row[0])
            kind = kind_of(stored)
            samples[kind] = min(stored, samples.get(kind, stored))
        return list(samples.values())

    async def upgrade_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        return await self.replace_password_hash(user_id, old_hash, new_hash)

    async def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """Swap the hash only if it is still ``old_hash``, in a short transaction
        of its own; False when the password changed meanwhile (or no such row)."""
        async with self.engine.transaction() as tx:
            return await self._replace(tx, user_id, old_hash, new_hash)

    async def replace_password_hash_in(
        self, tx: Transaction, user_id: int, old_hash: str, new_hash: str
    ) -> bool:
        """:meth:`replace_password_hash` as part of resetd's transaction ``tx``.

        With :attr:`shared` True (the engine given to :meth:`open` holds the
        app's table, and ``tx`` is one of its transactions) the update is a
        statement of ``tx``: it commits with the token's consumption, or rolls
        back with it. Otherwise the app's database is another one, and the
        update commits at once in a transaction of its own, while ``tx`` stays
        open (the caller rolls ``tx`` back, giving the token back, on False).
        """
        if not self.shared:
            return await self.replace_password_hash(user_id, old_hash, new_hash)
        return await self._replace(tx, user_id, old_hash, new_hash)

    async def _replace(self, tx: Transaction, user_id: int, old_hash: str, new_hash: str) -> bool:
        count = await tx.execute(self._sql.update, (new_hash, self._id_param(user_id), old_hash))
        return count == 1

    def _id_param(self, user_id: int) -> int | str:
        return str(user_id) if self._text_ids else user_id

    async def _matching(self, column: Column, field: str, keys: Sequence[str]) -> list[User]:
        """Every account whose ``column`` normalises to one of ``keys``: the
        candidates SQL sends back (see :meth:`Statements.candidates`), checked."""
        async with self.engine.transaction() as tx:
            rows = await tx.fetchall(self._sql.candidates(column), (ASCII_SPACE, list(keys)))
        wanted = set(keys)
        return [
            user
            for row in rows
            if isinstance(row[field], str) and normalize(row[field]) in wanted
            if (user := _user(row)) is not None
        ]


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


def _user_id(value: Any) -> int | None:
    """An account's id: an integer, or text spelling one (``"42"``, not ``"042"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and value == str(int(value)):
        return int(value)
    return None


def _user(row: Row) -> User | None:
    """An account from a row, or None when the row cannot be one: an id that is
    not an integer, or no hash."""
    user_id = _user_id(row["id"])
    if user_id is None or not isinstance(row["password_hash"], str):
        return None
    return User(user_id, str(row["username"] or ""), str(row["email"] or ""), row["password_hash"])
