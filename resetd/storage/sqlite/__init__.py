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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Concatenate, ParamSpec, Protocol, TypeVar, runtime_checkable

import aiosqlite

from ...config import DatabaseConfig, UsersConfig
from ...db import ERRORS, Database
from ..accounts import AccountStore, UserAdmin
from ..audit import AuditStore
from ..errors import StorageErrors
from ..in_transaction import BatchStatements, InBatch, InTransaction, TxStatements
from ..ledger import LedgerStore
from ..limits import LimitsStore
from ..outbox import OutboxStore
from ..requests import RequestStore
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


# Each store's statements, for the views of one transaction (in_transaction.py).
IN_TRANSACTION = TxStatements[aiosqlite.Connection](
    consume=ledger.consume,
    forget=limits.forget,
    end_sessions=sessions.end_all,
    enqueue=outbox.enqueue,
    enqueue_event=outbox.enqueue_event,
    record=audit.record,
)
IN_BATCH = BatchStatements[sqlite3.Connection](
    add_requests=requests.add_many,
    claim_requests=requests.claim,
    record_failures=requests.record_failures,
    record_tokens=ledger.record_many,
    hit_many=limits.hit_many,
    enqueue_many=outbox.enqueue_many,
    enqueue_events=outbox.enqueue_events,
    record_audit=audit.record_many,
)


class SqliteTransaction(InTransaction[aiosqlite.Connection]):
    """A :class:`~resetd.storage.Transaction` on the aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection, now: float, accounts: AccountStore) -> None:
        super().__init__(conn, now, IN_TRANSACTION)
        self.conn = conn
        self.accounts = _TxAccounts(self, accounts)


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


class SqliteBatch(InBatch[sqlite3.Connection]):
    """A :class:`~resetd.storage.Batch` on the writer thread's sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        super().__init__(conn, now, IN_BATCH)
