"""The SQLite connection: PRAGMAs, versioned migrations, short write transactions.

The tables themselves, one migration per version, are in :mod:`resetd.schema`.

One aiosqlite connection serves the process. Writes go through
:meth:`Database.transaction`, which serialises them with an asyncio lock and
opens ``BEGIN IMMEDIATE`` so a read-modify-write never races another writer
(another process on the same file waits on SQLite's busy timeout instead).
Statements use standard SQL (``INSERT … ON CONFLICT``, ``UPDATE … WHERE``)
so the storage modules can move to PostgreSQL later.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiosqlite

from .private_files import prepare_database
from .schema import MIGRATIONS
from .storage.errors import StorageErrors

log = logging.getLogger(__name__)

Row = sqlite3.Row

# What the storage on SQLite raises: any error, and the database's own state.
ERRORS = StorageErrors(error=(sqlite3.Error,), unavailable=(sqlite3.OperationalError,))

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


T = TypeVar("T")


# SQLite's bound-parameter limit in builds before 3.32 (newer ones allow more).
MAX_PARAMS = 999


def multi_row_inserts(
    table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> list[tuple[str, list[object]]]:
    """``INSERT INTO table (columns) VALUES (…), (…), …`` statements for ``rows``.

    ``executemany`` steps once per row, and sqlite3 releases the GIL around every
    step: a worker thread then has to win the GIL back from the event loop once per
    row. Under a busy loop that convoy made a batch of 6,000 captured messages take
    120 s instead of 4.6 s (and 5x the CPU). One statement per up to
    MAX_PARAMS values steps once.
    """
    if not rows:
        return []
    per_row = "(" + ", ".join("?" * len(columns)) + ")"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    most = 1 << (max(1, MAX_PARAMS // len(columns)).bit_length() - 1)
    out: list[tuple[str, list[object]]] = []
    start = 0
    while start < len(rows):
        # Chunks of a power-of-two row count: sqlite3 caches each distinct statement
        # (128 of them), and a statement per row count held ~30 MB of them.
        size = min(most, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        out.append((head + ", ".join([per_row] * size), [v for r in chunk for v in r]))
        start += size
    return out


def insert_rows(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """:func:`multi_row_inserts`, run on a sqlite3 connection (a BatchWriter's thread)."""
    for sql, params in multi_row_inserts(table, columns, rows):
        conn.execute(sql, params)


def _open(path: str, pragmas: tuple[str, ...]) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly), rows
    as :class:`sqlite3.Row`, usable from the thread that runs it."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    for pragma in pragmas:
        conn.execute(pragma)
    return conn


def _committed(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, *args)`` in the transaction begun on ``conn``: committed, or
    rolled back when it raises."""
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class BatchWriter:
    """A plain sqlite3 connection on a thread of its own, for hot write paths.

    ``await writer.run(fn, *args)`` runs ``fn(conn, *args)`` in one transaction
    in that thread: one hand-off per batch, however many statements it holds.
    With aiosqlite every statement is a hand-off whose completion waits for a
    busy event loop, which made a three-statement batch take a whole loop
    iteration per statement under load.
    """

    def __init__(self, path: str, pragmas: Sequence[str] = ()) -> None:
        self.path = path
        self.pragmas = (*PRAGMAS, *pragmas)  # extra ones apply to this connection only
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resetd-writer")
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        return _open(self.path, self.pragmas)

    def _in_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        return _committed(conn, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_transaction, fn, *args)

    async def checkpoint(self) -> None:
        """Copy what the WAL holds back into the database file (PASSIVE: never
        waits for readers or writers), in this thread, outside any transaction."""

        def passive() -> None:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, passive)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)


class LoopWriter:
    """A sqlite3 connection for short write transactions run on the event loop.

    A hand-off to a thread costs more than a small transaction itself: the
    worker has to win the GIL from a busy loop, and its reply waits for the
    loop's next turn. A caller that knows its transaction is small (bounded
    rows and bytes) runs it here instead. It never waits: with another
    connection holding the write lock, :meth:`try_run` returns None at once
    (busy_timeout 0) and the caller goes to its thread. It never copies the
    WAL back either (wal_autocheckpoint 0): a checkpoint can take far longer
    than a transaction, so the owner runs those in its thread
    (:meth:`BatchWriter.checkpoint`).
    """

    PRAGMAS = ("PRAGMA busy_timeout=0", "PRAGMA wal_autocheckpoint=0")

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def try_run(self, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(conn, *args)`` in one transaction, committed; None, with nothing
        done, when the database is locked by another connection. What ``fn``
        raises rolls the transaction back and goes on."""
        conn = self._conn
        if conn is None:
            conn = self._conn = _open(self.path, (*PRAGMAS, *self.PRAGMAS))
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise
        return _committed(conn, fn, *args)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Database:
    """A migrated aiosqlite connection with serialised write transactions."""

    def __init__(self, conn: aiosqlite.Connection, path: str, schema_version: int = 0) -> None:
        self.conn = conn
        self.path = path
        self.schema_version = schema_version  # the version its migrations lead to
        self._write_lock = asyncio.Lock()
        self._writer: BatchWriter | None = None
        # The storage's clock (see now()); the app factory may pass its own.
        self.clock: Callable[[], float] = time.time

    @property
    def writer(self) -> BatchWriter:
        """The thread and connection for the hot paths' write transactions.

        Each of those transactions is one hand-off, and they queue in this one
        thread, so they never contend inside SQLite. Contending, a transaction
        that spans several aiosqlite hops holds the write lock across loop
        iterations, and a second connection's BEGIN sleeps in SQLite's busy
        handler (1, 2, 5, 10 … ms between tries): under load the request intake
        waited 8 ms (median) to 34 ms (p90) to begin its 1 ms transaction.
        """
        if self._writer is None:
            self._writer = BatchWriter(self.path)
        return self._writer

    @classmethod
    async def open(cls, path: str, migrations: Sequence[str] = MIGRATIONS) -> Database:
        """Open (creating if needed, mode 0600) and migrate the database at ``path``."""
        if path != ":memory:":
            prepare_database(path)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in PRAGMAS:
            await conn.execute(pragma)
        db = cls(conn, path, len(migrations))
        await db._migrate(migrations)
        return db

    async def _migrate(self, migrations: Sequence[str]) -> None:
        async with self.conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > len(migrations):
            raise RuntimeError(
                f"{self.path}: schema version {version} is newer than this resetd "
                f"understands ({len(migrations)})"
            )
        for number, script in enumerate(migrations[version:], start=version + 1):
            log.info("migrating %s to schema version %d", self.path, number)
            # executescript commits first; wrap the script itself in a transaction
            # so a crash mid-migration leaves the previous version intact.
            await self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )

    async def schema_is_current(self) -> bool:
        """Whether the database's schema version is the one this resetd migrates
        to (another, newer resetd sharing it may have moved it on). Raises
        sqlite3.Error when the database does not answer."""
        row = await self.fetchone("PRAGMA user_version")
        return row is not None and int(row[0]) == self.schema_version

    async def now(self) -> float:
        """The clock that processes sharing this database compare: claim leases
        are read and written with it. Every process on one SQLite file runs on
        one host, so that is the host's clock; a database server shared by
        several hosts would answer with its own."""
        return self.clock()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        await self.conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialised ``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error)."""
        async with self._write_lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            else:
                await self.conn.execute("COMMIT")

    # Both read in one hop to the connection's thread. Executing and fetching in
    # separate hops let a write on this shared connection run between the two, and
    # SQLite leaves a statement's results undefined when the table changes under it
    # (a GROUP BY over the outbox came back with NULL statuses).

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = list(await self.conn.execute_fetchall(sql, tuple(params)))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return list(await self.conn.execute_fetchall(sql, tuple(params)))

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One write statement in its own transaction; returns the row count."""
        async with self.transaction() as conn:
            cur = await conn.execute(sql, tuple(params))
            return cur.rowcount
