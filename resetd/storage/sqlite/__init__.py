"""The storage on SQLite: resetd's database file, and an app's users table.

One aiosqlite connection (:class:`~resetd.db.Database`) serves reads and the
asynchronous :class:`~resetd.storage.Transaction`; a plain sqlite3 connection
on a thread of its own (:class:`~resetd.db.BatchWriter`) runs each
:class:`~resetd.storage.Batch` in one hand-off. Every process on one SQLite
file runs on one host, so the storage's clock is the host's.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Concatenate, ParamSpec, Protocol, TypeVar, runtime_checkable

import aiosqlite

from ...config import DatabaseConfig, UsersConfig
from ...db import ERRORS, Database
from ...reset.compose import ComposedMail
from ..accounts import AccountStore, UserAdmin
from ..audit import AuditRow, AuditStore
from ..errors import StorageErrors
from ..ledger import IssuedToken, LedgerStore
from ..limits import Hit, LimitsStore
from ..outbox import NewEvent, NewMail, OutboxStore
from ..requests import NewRequest, RequestStore
from ..retention import RetentionStore
from ..sessions import SessionRows
from ..transaction import Batch
from . import audit, ledger, limits, outbox, requests, sessions
from .app_users import SqliteAppUsers
from .outbox import SqliteOutbox
from .retention import SqliteRetention
from .users import SqliteUsers

T = TypeVar("T")
P = ParamSpec("P")


@runtime_checkable
class _Closes(Protocol):
    async def close(self) -> None: ...


class SqliteStorage:
    """Every store of resetd's SQLite database, for the process named ``owner``."""

    errors: StorageErrors = ERRORS

    def __init__(
        self,
        db: Database,
        owner: str | None = None,
        *,
        accounts: AccountStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``accounts``: where accounts live when not in resetd's own ``users``
        table (an app's table, closed by :meth:`close` with the rest)."""
        self.db = db
        self.clock = clock
        db.clock = clock
        own = SqliteUsers(db)
        self.users: UserAdmin = own
        self._app_users = accounts
        self.accounts: AccountStore = own if accounts is None else accounts
        self.sessions: SessionRows = sessions.SqliteSessions(db)
        self.ledger: LedgerStore = ledger.SqliteLedger(db)
        self.limits: LimitsStore = limits.SqliteLimits(db)
        self.requests: RequestStore = requests.SqliteRequests(db)
        self.outbox: OutboxStore = SqliteOutbox(db, owner)
        self.audit: AuditStore = audit.SqliteAudit(db)
        self.retention: RetentionStore = SqliteRetention(db)

    @classmethod
    async def open(
        cls,
        database: DatabaseConfig,
        users: UsersConfig | None = None,
        owner: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> SqliteStorage:
        """Open and migrate ``[database] path``, and the app's users table when
        ``[users] store`` is ``"sqlite"`` or ``"postgresql"``; raises ConfigError
        when that table does not fit its mapping."""
        db = await Database.open(database.path)
        app_users: AccountStore | None = None
        try:
            if users is not None and users.store == "sqlite":
                app_users = await SqliteAppUsers.open(users)
            elif users is not None and users.store == "postgresql":
                # resetd on SQLite, the app's users on PostgreSQL: each hash is
                # written in a short transaction of its own, as for a SQLite app.
                from ..postgres.app_users import PostgresAppUsers  # the driver, when asked for

                app_users = await PostgresAppUsers.open(users)
        except BaseException:
            await db.close()
            raise
        return cls(db, owner, accounts=app_users, clock=clock)

    async def now(self) -> float:
        return self.clock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        async with self.db.transaction() as conn:
            yield SqliteTransaction(conn, self.clock(), self.accounts)

    async def batch(
        self, fn: Callable[Concatenate[Batch, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        def call(batch: Batch) -> T:
            return fn(batch, *args, **kwargs)

        return await self.db.writer.run(_in_batch, self.clock, call)

    async def schema_is_current(self) -> bool:
        return await self.db.schema_is_current()

    async def close(self) -> None:
        if isinstance(self._app_users, _Closes):
            await self._app_users.close()
        await self.db.close()


def _in_batch(conn: sqlite3.Connection, clock: Callable[[], float], fn: Callable[[Batch], T]) -> T:
    return fn(SqliteBatch(conn, clock()))


class SqliteTransaction:
    """A :class:`~resetd.storage.Transaction` on the aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection, now: float, accounts: AccountStore) -> None:
        self.conn = conn
        self.now = now
        self.accounts = _TxAccounts(self, accounts)
        self.ledger = _TxLedger(self)
        self.limits = _TxLimits(self)
        self.sessions = _TxSessions(self)
        self.outbox = _TxOutbox(self)
        self.audit = _TxAudit(self)


class _TxAccounts:
    def __init__(self, tx: SqliteTransaction, store: AccountStore) -> None:
        self.tx, self.store = tx, store

    async def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        if isinstance(self.store, SqliteUsers):  # resetd's own table: this transaction
            return await self.store.replace_password_hash(
                user_id, old_hash, new_hash, within=self.tx.conn
            )
        # An app's table: its own short transaction, made while this one is open,
        # which then commits, or rolls back (giving the token back) on False.
        return await self.store.replace_password_hash(user_id, old_hash, new_hash)


class _TxLedger:
    def __init__(self, tx: SqliteTransaction) -> None:
        self.tx = tx

    async def consume(self, jti: str, now: float) -> bool:
        return await ledger.consume(self.tx.conn, jti, now)


class _TxLimits:
    def __init__(self, tx: SqliteTransaction) -> None:
        self.tx = tx

    async def forget(self, buckets: Sequence[str]) -> None:
        await limits.forget(self.tx.conn, buckets)


class _TxSessions:
    def __init__(self, tx: SqliteTransaction) -> None:
        self.tx = tx

    async def end_all(self, user_id: int) -> None:
        await sessions.end_all(self.tx.conn, user_id)


class _TxOutbox:
    def __init__(self, tx: SqliteTransaction) -> None:
        self.tx = tx

    async def enqueue(
        self,
        kind: str,
        mail: ComposedMail,
        *,
        user_id: int | str | None = None,
        expires_at: float | None = None,
    ) -> int:
        new = NewMail(mail, user_id, expires_at)
        return await outbox.enqueue(self.tx.conn, kind, new, self.tx.now)

    async def enqueue_event(self, event: NewEvent) -> int:
        return await outbox.enqueue_event(self.tx.conn, event, self.tx.now)


class _TxAudit:
    def __init__(self, tx: SqliteTransaction) -> None:
        self.tx = tx

    async def record(
        self,
        event: str,
        outcome: str,
        *,
        user_id: int | str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        row: AuditRow = (event, outcome, user_id, client_ip, user_agent)
        await audit.record(self.tx.conn, self.tx.now, row)


class SqliteBatch:
    """A :class:`~resetd.storage.Batch` on the writer thread's sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.requests = _BatchRequests(self)
        self.ledger = _BatchLedger(self)
        self.limits = _BatchLimits(self)
        self.outbox = _BatchOutbox(self)
        self.audit = _BatchAudit(self)


class _BatchRequests:
    def __init__(self, b: SqliteBatch) -> None:
        self.b = b

    def add_many(self, rows: Sequence[NewRequest]) -> None:
        requests.add_many(self.b.conn, rows, self.b.now)

    def claim(self, ids: list[int]) -> set[int]:
        return requests.claim(self.b.conn, ids, self.b.now)

    def record_failures(self, failures: Sequence[tuple[int, str]]) -> None:
        requests.record_failures(self.b.conn, failures)


class _BatchLedger:
    def __init__(self, b: SqliteBatch) -> None:
        self.b = b

    def record_many(self, tokens: Sequence[IssuedToken]) -> None:
        ledger.record_many(self.b.conn, tokens)


class _BatchLimits:
    def __init__(self, b: SqliteBatch) -> None:
        self.b = b

    def hit_many(self, hits: list[Hit]) -> list[int | None]:
        return limits.hit_many(self.b.conn, hits, self.b.now)


class _BatchOutbox:
    def __init__(self, b: SqliteBatch) -> None:
        self.b = b

    def enqueue_many(self, kind: str, mails: Sequence[NewMail]) -> None:
        outbox.enqueue_many(self.b.conn, kind, mails, self.b.now)

    def enqueue_events(self, events: Sequence[NewEvent]) -> None:
        outbox.enqueue_events(self.b.conn, events, self.b.now)


class _BatchAudit:
    def __init__(self, b: SqliteBatch) -> None:
        self.b = b

    def record_many(self, events: Sequence[AuditRow]) -> None:
        audit.record_many(self.b.conn, self.b.now, events)
