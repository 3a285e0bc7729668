"""Which storage a configuration names, opened: the one place that chooses.

``[database] url`` picks the engine: ``sqlite:///…`` (the default) opens
:class:`~resetd.storage.sqlite.SqliteStorage`, ``postgresql://…`` opens
:class:`~resetd.storage.postgres.PostgresStorage` (imported only then, so
SQLite deployments never load psycopg). The app factory, ``serve`` and the
CLI call :func:`open_storage`; nothing else names an implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..config import ConfigError, DatabaseConfig, UsersConfig
from . import Storage


async def open_storage(
    database: DatabaseConfig,
    users: UsersConfig | None = None,
    owner: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> Storage:
    """Open and migrate the database ``[database]`` names (and an app's users
    table when ``users`` maps one); ``owner`` names this process's claims.

    ``clock`` is the SQLite storage's; on PostgreSQL every instance reads the
    database server's. Raises ConfigError when the database cannot be opened
    or reached (one line, no password) or an app's table does not fit its
    mapping.
    """
    if database.engine == "postgresql":
        try:
            from .postgres import PostgresStorage
            from .postgres.engine import EngineError
        except ImportError as exc:  # psycopg missing: the extra is not installed
            raise ConfigError(
                f"[database] url: {database.redacted_url()} needs the PostgreSQL driver: "
                f"pip install 'resetd[postgresql]' ({exc.name} is not installed)"
            ) from None
        try:
            return await PostgresStorage.open(database, users, owner)
        except EngineError as exc:
            raise ConfigError(f"[database] url: {exc}") from None
    from .sqlite import SqliteStorage

    return await SqliteStorage.open(database, users, owner, clock=clock)
