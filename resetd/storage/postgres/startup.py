"""An engine opened with its schema current: what ``serve`` and the CLI use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from ...config import DatabaseConfig
from .engine import PostgresEngine
from .migrations import migrate_to_newest


async def open_migrated(
    url: str, *, pool_size: int = 10, schema: str = "public", migrate: bool = True
) -> PostgresEngine:
    """:meth:`PostgresEngine.open`, then the migrations this schema has not seen
    (unless ``migrate`` is False). Raises EngineError, SchemaTooNew."""
    engine = await PostgresEngine.open(url, pool_size=pool_size, schema=schema)
    try:
        if migrate:
            await migrate_to_newest(engine)
    except BaseException:
        await engine.close()
        raise
    return engine


@asynccontextmanager
async def engine_context(
    url: str, *, pool_size: int = 10, schema: str = "public", migrate: bool = True
) -> AsyncIterator[PostgresEngine]:
    """An open, migrated engine for the block's duration: the shape of an
    aiohttp cleanup context (``async with`` it inside one)."""
    engine = await open_migrated(url, pool_size=pool_size, schema=schema, migrate=migrate)
    try:
        yield engine
    finally:
        await engine.close()


def from_config(db: DatabaseConfig) -> AbstractAsyncContextManager[PostgresEngine]:
    """:func:`engine_context` for ``[database]`` (a postgresql:// url)."""
    return engine_context(db.url, pool_size=db.pool_size, schema=db.schema)
