"""What the PostgreSQL storage raises, for logic that must tell the kinds apart
(see :class:`resetd.storage.errors.StorageErrors`); every store of it shares
this one value, as every SQLite store shares :data:`resetd.db.ERRORS`."""

from __future__ import annotations

import psycopg
from psycopg.errors import ReadOnlySqlTransaction

from ..errors import StorageErrors
from .engine import EngineError

ERRORS = StorageErrors(
    error=(psycopg.Error, EngineError),
    # The database's state, not a row's: unreachable or shutting down, out of
    # connections (PoolTimeout), a lock or statement timeout, a full disk, a
    # closed connection, or a server that turned standby under a failover.
    unavailable=(
        psycopg.OperationalError,
        psycopg.InterfaceError,
        ReadOnlySqlTransaction,
        EngineError,
    ),
)
