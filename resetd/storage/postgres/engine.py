"""The PostgreSQL engine: a connection pool, explicit transactions, the database's clock.

Every statement runs inside ``async with engine.transaction() as tx``: one
pooled connection, ``BEGIN`` … ``COMMIT`` (``ROLLBACK`` when the block raises).
READ COMMITTED is the default, as in PostgreSQL; a read-modify-write that must
see one snapshot asks for SERIALIZABLE through :meth:`PostgresEngine.run`,
which runs the whole unit again when PostgreSQL reports a serialization
failure or a deadlock (both mean "nothing was written, try again").

Statements use psycopg's ``%s`` placeholders. Each connection has
``search_path`` set to ``[database] schema`` and ``application_name=resetd``
(unless the url names one), so unqualified table names are this resetd's and
``pg_stat_activity`` shows whose connections these are.

Instances compare clocks (leases, rate-limit windows, token ages): they read
the one that :meth:`PostgresEngine.now` returns, the database server's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import DeadlockDetected, SerializationFailure
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...db_url import redacted_url, scrub
from .listen import ListenCallback, Listener, channel_name

log = logging.getLogger(__name__)

T = TypeVar("T")
# Statements are the storage modules' constants (identifiers composed with sql.Identifier).
Query = str | sql.SQL | sql.Composed
Isolation = Literal["read committed", "repeatable read", "serializable"]
_BEGIN = {
    "read committed": "BEGIN ISOLATION LEVEL READ COMMITTED",
    "repeatable read": "BEGIN ISOLATION LEVEL REPEATABLE READ",
    "serializable": "BEGIN ISOLATION LEVEL SERIALIZABLE",
}
APPLICATION_NAME = "resetd"
CONNECT_TIMEOUT = 10  # seconds, unless the url sets connect_timeout
RETRY_ATTEMPTS = 5


class EngineError(Exception):
    """The database cannot be reached or used; the message names it by its
    redacted url and never holds a password."""


class Row:
    """One result row, read by position (``row[0]``) or by column name
    (``row["id"]``), as :class:`sqlite3.Row` is on SQLite."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: tuple[Any, ...], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _rows(cursor: AsyncCursor[Any]) -> Callable[[Sequence[Any]], Row]:
    names = [c.name for c in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}
    return lambda values: Row(tuple(values), index)


class Transaction:
    """One transaction's statements: ``execute`` (returns the row count),
    ``fetchone``, ``fetchall``. Valid only inside its ``async with`` block."""

    def __init__(self, conn: AsyncConnection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = schema  # channel names are per schema (see listen.py)

    async def execute(self, query: Query, params: Sequence[Any] = ()) -> int:
        async with self.conn.cursor() as cur:
            await cur.execute(query, params)
            return cur.rowcount

    async def fetchone(self, query: Query, params: Sequence[Any] = ()) -> Row | None:
        async with self.conn.cursor(row_factory=_rows) as cur:
            await cur.execute(query, params)
            return await cur.fetchone()

    async def fetchall(self, query: Query, params: Sequence[Any] = ()) -> list[Row]:
        async with self.conn.cursor(row_factory=_rows) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()


async def notify(tx: Transaction, channel: str, payload: str = "") -> None:
    """Wake every listener of ``channel`` (this schema's) when ``tx`` commits;
    nothing is sent if it rolls back."""
    await tx.execute("SELECT pg_notify(%s, %s)", (channel_name(tx.schema, channel), payload))


def connection_kwargs(url: str, name: str = APPLICATION_NAME) -> dict[str, Any]:
    """What every resetd connection adds to the url: autocommit (transactions are
    explicit), and unless the url sets them an application_name (``name``: what
    the connection is for, in ``pg_stat_activity``) and a connect timeout."""
    given = conninfo_to_dict(url)
    kwargs: dict[str, Any] = {"autocommit": True}
    if "application_name" not in given:
        kwargs["application_name"] = name
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    return kwargs


class PostgresEngine:
    """A pool of ``pool_size`` connections to one database, tables in ``schema``.

    Open with :meth:`open` (or :func:`.startup.engine_context`, which migrates);
    :meth:`close` stops its listeners and closes the pool.
    """

    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection[Any]], url: str, schema: str
    ) -> None:
        self.pool = pool
        self.url = url  # never printed: see display
        self.schema = schema
        self._listeners: list[Listener] = []

    @property
    def display(self) -> str:
        return redacted_url(self.url)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10, schema: str = "public") -> PostgresEngine:
        """Connect ``pool_size`` connections (migrating is :mod:`.startup`'s part).

        Raises EngineError when the database cannot be reached: one line with
        the redacted url and libpq's reason.
        """
        kwargs = connection_kwargs(url)
        try:  # one connection first: its error says why, a pool's only "timed out"
            first = await AsyncConnection.connect(url, **kwargs)
        except psycopg.OperationalError as exc:
            raise EngineError(
                f"cannot connect to {redacted_url(url)}: {_reason(exc, url)}"
            ) from None
        await first.close()

        async def configure(conn: AsyncConnection[Any]) -> None:
            await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            kwargs=kwargs,
            min_size=pool_size,
            max_size=pool_size,
            configure=configure,
            # A connection that died while idle (a restart, a failover) is
            # replaced when taken, not handed to a transaction to fail there.
            check=AsyncConnectionPool.check_connection,
            open=False,
            name="resetd",
        )
        try:
            await pool.open(wait=True, timeout=float(kwargs.get("connect_timeout", 30)) + 5)
        except PoolTimeout:
            await pool.close()
            raise EngineError(
                f"cannot open {pool_size} connections to {redacted_url(url)} "
                "(see [database] pool_size and the server's max_connections)"
            ) from None
        return cls(pool, url, schema)

    async def close(self) -> None:
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        await self.pool.close()

    @asynccontextmanager
    async def transaction(
        self, isolation: Isolation = "read committed"
    ) -> AsyncIterator[Transaction]:
        """``BEGIN`` … ``COMMIT`` on one pooled connection; ``ROLLBACK`` when
        the block raises (the exception goes on)."""
        async with self.pool.connection() as conn:
            await conn.execute(_BEGIN[isolation])
            try:
                yield Transaction(conn, self.schema)
            except BaseException:
                # A connection that broke mid-transaction cannot roll back; the
                # pool sees its state and replaces it.
                if not conn.closed:
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def run(
        self,
        unit: Callable[[Transaction], Awaitable[T]],
        *,
        isolation: Isolation = "serializable",
        attempts: int = RETRY_ATTEMPTS,
    ) -> T:
        """``unit(tx)`` in a transaction, run again (up to ``attempts`` times in
        all) when PostgreSQL aborts it with a serialization failure or a
        deadlock; its result. ``unit`` must do nothing but statements on
        ``tx``, since it may run more than once."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.transaction(isolation) as tx:
                    return await unit(tx)
            except (SerializationFailure, DeadlockDetected) as exc:
                if attempt == attempts:
                    raise
                log.debug("transaction retried (%s), attempt %d", type(exc).__name__, attempt)
                await asyncio.sleep(0.005 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def now(self) -> float:
        """Seconds since the epoch by the database server's clock (the one every
        instance sharing it compares), as it is at this call, not at its
        transaction's start."""
        row = await self.fetchone("SELECT extract(epoch FROM clock_timestamp())::float8")
        assert row is not None
        return float(row[0])

    async def fetchone(self, query: str, params: Sequence[Any] = ()) -> Row | None:
        async with self.transaction() as tx:
            return await tx.fetchone(query, params)

    async def fetchall(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self.transaction() as tx:
            return await tx.fetchall(query, params)

    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; the row count."""
        async with self.transaction() as tx:
            return await tx.execute(query, params)

    def listen(self, channel: str, callback: ListenCallback) -> Listener:
        """Call ``callback(payload)`` for each notification on ``channel`` (this
        schema's), from a background task on a connection of its own that
        reconnects when lost; after each reconnection ``callback(None)``, since
        what was sent meanwhile is gone. Stopped by :meth:`close`."""
        listener = Listener(
            self.url,
            connection_kwargs(self.url),
            channel_name(self.schema, channel),
            callback,
        )
        listener.start()
        self._listeners.append(listener)
        return listener

    def hold(self, lock: tuple[int, int], name: str, application_name: str) -> Listener:
        """Hold the session-level advisory lock ``lock`` (``name`` in the logs) on a
        connection of its own (``application_name`` unless the url names one),
        taken again after each reconnection, until :meth:`close`; the listener
        says whether it is held."""
        kwargs = connection_kwargs(self.url, application_name)
        holder = Listener(self.url, kwargs, None, lambda _: None, lock=lock, name=name)
        holder.start()
        self._listeners.append(holder)
        return holder


def _reason(exc: psycopg.Error, url: str) -> str:
    """libpq's message, one line, any password in it hidden."""
    return " ".join(scrub(str(exc), url).split())
