"""A :class:`~resetd.storage.Storage` on each engine, for tests of behaviour both
must share: ``storage`` (one instance) and ``open_storage`` (more instances on
the same database, as several resetd processes would be).

tests/conftest.py registers both fixtures: a test that takes either runs
twice, ``[sqlite]`` on a temporary file and ``[postgresql]`` on a fresh
migrated database (``pg_url``; skipped, or failed under CI, as tests/pg.py
decides when no PostgreSQL is available).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from resetd.config import DatabaseConfig
from resetd.db import Database
from resetd.storage import Storage
from resetd.storage.sqlite import SqliteStorage

ENGINES = ("sqlite", "postgresql")

# open_storage(owner) → another instance on the test's database
StorageFactory = Callable[[str], Awaitable[Storage]]


@pytest.fixture(params=ENGINES)
async def open_storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StorageFactory]:
    """Opens instances of the storage on one database; closes them after the test."""
    opened: list[Storage] = []
    if request.param == "sqlite":
        path = str(tmp_path / "resetd.db")

        async def make(owner: str) -> Storage:
            return SqliteStorage(await Database.open(path), owner)

    else:
        url: str = request.getfixturevalue("pg_url")
        from resetd.storage.postgres import PostgresStorage

        async def make(owner: str) -> Storage:
            return await PostgresStorage.open(DatabaseConfig(url=url, pool_size=4), owner=owner)

    async def open_one(owner: str) -> Storage:
        storage = await make(owner)
        opened.append(storage)
        return storage

    yield open_one
    for storage in reversed(opened):
        await storage.close()


@pytest.fixture
async def storage(open_storage: StorageFactory) -> Storage:
    """The first instance on the test's database."""
    return await open_storage("instance-a")
