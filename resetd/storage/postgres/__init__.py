"""PostgreSQL, the store several resetd instances share.

:class:`PostgresStorage` (in :mod:`.storage`) implements
:class:`resetd.storage.Storage`, one module per concern as on SQLite;
:mod:`.engine` holds the connection pool, transactions, the database clock and
LISTEN/NOTIFY; :mod:`.migrations` the tables, at the same schema versions as
SQLite's (:mod:`resetd.schema`). Importing this package needs no driver (a
SQLite-only install imports it); importing those modules, or the names below,
needs the ``postgresql`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .storage import PostgresBatch, PostgresStorage, PostgresTransaction

_LAZY = ("PostgresBatch", "PostgresStorage", "PostgresTransaction")


def __getattr__(name: str) -> Any:
    """``from resetd.storage.postgres import PostgresStorage`` imports the driver
    only then (PEP 562)."""
    if name in _LAZY:
        from . import storage

        return getattr(storage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PostgresBatch", "PostgresStorage", "PostgresTransaction"]
