"""The storage on PostgreSQL: one database shared by any number of instances.

The engine's async pool serves reads and the asynchronous
:class:`~resetd.storage.Transaction`; a small sync pool, on threads of this
storage's own, runs each :class:`~resetd.storage.Batch` in one hand-off, as
the SQLite storage's writer thread does. Every clock the instances compare is
the database server's: a transaction's ``now`` is its start by that clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import sql
from psycopg.errors import DeadlockDetected, SerializationFailure
from psycopg_pool import ConnectionPool, PoolTimeout

from ...config import DatabaseConfig, UsersConfig
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
from ..sqlite.app_users import SqliteAppUsers
from ..transaction import Batch
from . import audit, ledger, limits, migrations, outbox, requests, sessions
from .app_users import PostgresAppUsers
from .clock import batch_now, transaction_now
from .engine import RETRY_ATTEMPTS, EngineError, PostgresEngine, Transaction, connection_kwargs
from .errors import ERRORS
from .outbox import PostgresOutbox
from .requests import PostgresRequests
from .retention import PostgresRetention
from .startup import open_migrated
from .users import PostgresUsers

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

# Threads (and sync connections, on top of [database] pool_size) for batches:
# the request intake and the request processor each run one at a time.
BATCH_THREADS = 2


async def open_batch_pool(url: str, schema: str, size: int = BATCH_THREADS) -> ConnectionPool:
    """The sync pool batches run on, its connections set up as the engine's
    (autocommit, application_name, ``search_path``). Raises EngineError."""
    kwargs = connection_kwargs(url)

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

    pool: ConnectionPool = ConnectionPool(
        url,
        kwargs=kwargs,
        min_size=size,
        max_size=size,
        configure=configure,
        check=ConnectionPool.check_connection,
        open=False,
        name="resetd-batch",
    )
    timeout = float(kwargs.get("connect_timeout", 30)) + 5
    try:
        await asyncio.to_thread(pool.open, wait=True, timeout=timeout)
    except PoolTimeout:
        await asyncio.to_thread(pool.close)
        raise EngineError(
            f"cannot open {size} batch connections to the database "
            "(see [database] pool_size and the server's max_connections)"
        ) from None
    return pool


class PostgresStorage:
    """Every store of resetd's PostgreSQL database, for the process named ``owner``."""

    errors: StorageErrors = ERRORS

    def __init__(
        self,
        engine: PostgresEngine,
        sync_pool: ConnectionPool,
        owner: str | None = None,
        *,
        accounts: AccountStore | None = None,
    ) -> None:
        """``sync_pool``: connections for :meth:`batch` (see :func:`open_batch_pool`),
        closed by :meth:`close`. ``accounts``: where accounts live when not in
        resetd's own ``users`` table (an app's table, closed with the rest)."""
        self.engine = engine
        self.sync_pool = sync_pool
        own = PostgresUsers(engine)
        self.users: UserAdmin = own
        self._app_users = accounts
        self.accounts: AccountStore = own if accounts is None else accounts
        self.sessions: SessionRows = sessions.PostgresSessions(engine)
        self.ledger: LedgerStore = ledger.PostgresLedger(engine)
        self.limits: LimitsStore = limits.PostgresLimits(engine)
        self.requests: RequestStore = PostgresRequests(engine)
        self.outbox: OutboxStore = PostgresOutbox(engine, owner)
        self.audit: AuditStore = audit.PostgresAudit(engine)
        self.retention: RetentionStore = PostgresRetention(engine)
        self._executor = ThreadPoolExecutor(BATCH_THREADS, thread_name_prefix="resetd-batch")

    @classmethod
    async def open(
        cls,
        database: DatabaseConfig,
        users: UsersConfig | None = None,
        owner: str | None = None,
    ) -> PostgresStorage:
        """Open ``[database] url`` and migrate its schema (``""``: ``public``), and
        the app's users table when ``[users] store = "postgresql"``. Raises
        EngineError, SchemaTooNew, and ConfigError when the app's table does not
        fit its mapping."""
        url, schema = database.url, database.schema or "public"
        engine = await open_migrated(url, pool_size=database.pool_size, schema=schema)
        sync_pool: ConnectionPool | None = None
        try:
            sync_pool = await open_batch_pool(url, schema)
            app_users: PostgresAppUsers | SqliteAppUsers | None = None
            if users is not None and users.store == "sqlite":  # the app's SQLite file
                app_users = await SqliteAppUsers.open(users)
            elif users is not None and users.store == "postgresql":
                # Given resetd's engine, the store shares it when [users] url names
                # this same database: the password change and the token's
                # consumption are then one transaction.
                app_users = await PostgresAppUsers.open(users, engine=engine)
        except BaseException:
            if sync_pool is not None:
                await asyncio.to_thread(sync_pool.close)
            await engine.close()
            raise
        return cls(engine, sync_pool, owner, accounts=app_users)

    async def now(self) -> float:
        return await self.engine.now()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self.engine.transaction() as tx:
            yield PostgresTransaction(tx, await transaction_now(tx), self.accounts)

    async def batch(
        self, fn: Callable[Concatenate[Batch, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """As :meth:`resetd.storage.Storage.batch`; run again from the start when
        PostgreSQL aborts it with a serialization failure or a deadlock, so
        ``fn`` must do nothing but statements on its batch."""

        def call(batch: Batch) -> T:
            return fn(batch, *args, **kwargs)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(run_batch, self.sync_pool, call))

    async def schema_is_current(self) -> bool:
        return await migrations.schema_is_current(self.engine)

    async def close(self) -> None:
        if isinstance(self._app_users, PostgresAppUsers | SqliteAppUsers):
            await self._app_users.close()
        await asyncio.to_thread(self._executor.shutdown)  # a batch under way ends first
        await asyncio.to_thread(self.sync_pool.close)
        await self.engine.close()


def run_batch(
    pool: ConnectionPool, fn: Callable[[Batch], T], *, attempts: int = RETRY_ATTEMPTS
) -> T:
    """``fn(batch)`` in one transaction on a connection of ``pool`` (in the
    calling thread), again when PostgreSQL reports a serialization failure or a
    deadlock (nothing was written), as :meth:`PostgresEngine.run` does."""
    for attempt in range(1, attempts + 1):
        try:
            with pool.connection() as conn:
                conn.execute("BEGIN")
                try:
                    result = fn(PostgresBatch(conn, batch_now(conn)))
                except BaseException:
                    if not conn.closed:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
        except (SerializationFailure, DeadlockDetected) as exc:
            if attempt == attempts:
                raise
            log.debug("batch retried (%s), attempt %d", type(exc).__name__, attempt)
            time.sleep(0.005 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


class PostgresTransaction:
    """A :class:`~resetd.storage.Transaction` on one of the engine's connections."""

    def __init__(self, tx: Transaction, now: float, accounts: AccountStore) -> None:
        self.tx = tx
        self.now = now
        self.accounts = _TxAccounts(self, accounts)
        self.ledger = _TxLedger(self)
        self.limits = _TxLimits(self)
        self.sessions = _TxSessions(self)
        self.outbox = _TxOutbox(self)
        self.audit = _TxAudit(self)


class _TxAccounts:
    def __init__(self, tx: PostgresTransaction, store: AccountStore) -> None:
        self.tx, self.store = tx, store

    async def replace_password_hash(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        store = self.store
        if isinstance(store, PostgresUsers):  # resetd's own table: this transaction
            return await store.replace_password_hash(user_id, old_hash, new_hash, within=self.tx.tx)
        if isinstance(store, PostgresAppUsers):
            # In this transaction when the app's table shares resetd's database;
            # otherwise its own short one, made while this one is open.
            return await store.replace_password_hash_in(self.tx.tx, user_id, old_hash, new_hash)
        # Elsewhere (an app's SQLite table): its own short transaction, made while
        # this one is open, which then commits, or rolls back (giving the token
        # back) on False.
        return await store.replace_password_hash(user_id, old_hash, new_hash)


class _TxLedger:
    def __init__(self, tx: PostgresTransaction) -> None:
        self.tx = tx

    async def consume(self, jti: str, now: float) -> bool:
        return await ledger.consume(self.tx.tx, jti, now)


class _TxLimits:
    def __init__(self, tx: PostgresTransaction) -> None:
        self.tx = tx

    async def forget(self, buckets: Sequence[str]) -> None:
        await limits.forget(self.tx.tx, buckets)


class _TxSessions:
    def __init__(self, tx: PostgresTransaction) -> None:
        self.tx = tx

    async def end_all(self, user_id: int) -> None:
        await sessions.end_all(self.tx.tx, user_id)


class _TxOutbox:
    def __init__(self, tx: PostgresTransaction) -> None:
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
        return await outbox.enqueue(self.tx.tx, kind, new, self.tx.now)

    async def enqueue_event(self, event: NewEvent) -> int:
        return await outbox.enqueue_event(self.tx.tx, event, self.tx.now)


class _TxAudit:
    def __init__(self, tx: PostgresTransaction) -> None:
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
        await audit.record(self.tx.tx, self.tx.now, row)


class PostgresBatch:
    """A :class:`~resetd.storage.Batch` on a sync connection, inside its transaction."""

    def __init__(self, conn: psycopg.Connection[Any], now: float) -> None:
        self.conn = conn
        self.now = now
        self.requests = _BatchRequests(self)
        self.ledger = _BatchLedger(self)
        self.limits = _BatchLimits(self)
        self.outbox = _BatchOutbox(self)
        self.audit = _BatchAudit(self)


class _BatchRequests:
    def __init__(self, b: PostgresBatch) -> None:
        self.b = b

    def add_many(self, rows: Sequence[NewRequest]) -> None:
        requests.add_many(self.b.conn, rows, self.b.now)

    def claim(self, ids: list[int]) -> set[int]:
        return requests.claim(self.b.conn, ids, self.b.now)

    def record_failures(self, failures: Sequence[tuple[int, str]]) -> None:
        requests.record_failures(self.b.conn, failures)


class _BatchLedger:
    def __init__(self, b: PostgresBatch) -> None:
        self.b = b

    def record_many(self, tokens: Sequence[IssuedToken]) -> None:
        ledger.record_many(self.b.conn, tokens)


class _BatchLimits:
    def __init__(self, b: PostgresBatch) -> None:
        self.b = b

    def hit_many(self, hits: list[Hit]) -> list[int | None]:
        return limits.hit_many(self.b.conn, hits, self.b.now)


class _BatchOutbox:
    def __init__(self, b: PostgresBatch) -> None:
        self.b = b

    def enqueue_many(self, kind: str, mails: Sequence[NewMail]) -> None:
        outbox.enqueue_many(self.b.conn, kind, mails, self.b.now)

    def enqueue_events(self, events: Sequence[NewEvent]) -> None:
        outbox.enqueue_events(self.b.conn, events, self.b.now)


class _BatchAudit:
    def __init__(self, b: PostgresBatch) -> None:
        self.b = b

    def record_many(self, events: Sequence[AuditRow]) -> None:
        audit.record_many(self.b.conn, self.b.now, events)
