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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import sql
from psycopg.errors import DeadlockDetected, SerializationFailure
from psycopg_pool import ConnectionPool, PoolTimeout

from ...config import DatabaseConfig, UsersConfig
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


# Each store's statements, for the views of one transaction (in_transaction.py).
IN_TRANSACTION = TxStatements[Transaction](
    consume=ledger.consume,
    forget=limits.forget,
    end_sessions=sessions.end_all,
    enqueue=outbox.enqueue,
    enqueue_event=outbox.enqueue_event,
    record=audit.record,
)
IN_BATCH = BatchStatements[psycopg.Connection[Any]](
    add_requests=requests.add_many,
    claim_requests=requests.claim,
    record_failures=requests.record_failures,
    record_tokens=ledger.record_many,
    hit_many=limits.hit_many,
    enqueue_many=outbox.enqueue_many,
    enqueue_events=outbox.enqueue_events,
    record_audit=audit.record_many,
)


class PostgresTransaction(InTransaction[Transaction]):
    """A :class:`~resetd.storage.Transaction` on one of the engine's connections."""

    def __init__(self, tx: Transaction, now: float, accounts: AccountStore) -> None:
        super().__init__(tx, now, IN_TRANSACTION)
        self.tx = tx
        self.accounts = _TxAccounts(self, accounts)


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


class PostgresBatch(InBatch[psycopg.Connection[Any]]):
    """A :class:`~resetd.storage.Batch` on a sync connection, inside its transaction."""

    def __init__(self, conn: psycopg.Connection[Any], now: float) -> None:
        super().__init__(conn, now, IN_BATCH)
