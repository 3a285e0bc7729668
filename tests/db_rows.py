"""Rows of resetd's own database read beneath the storage's interfaces, on
either engine: what tests of modules marked ``both_engines`` inspect.

Statements are written once, with SQLite's ``?`` placeholders and SQL both
engines read; on PostgreSQL each ``?`` becomes ``%s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from resetd import keys
from resetd.reset.tokens import Claims, issued


class Rows:
    """``fetchone``, ``fetchall`` and ``execute`` on the app's database."""

    def __init__(self, app: web.Application) -> None:
        self.storage = app[keys.storage]

    def _postgres(self) -> Any | None:
        return getattr(self.storage, "engine", None)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        engine = self._postgres()
        if engine is not None:
            return list(await engine.fetchall(sql.replace("?", "%s"), params))
        return list(await self.storage.db.fetchall(sql, params))  # type: ignore[attr-defined]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        engine = self._postgres()
        if engine is not None:
            return await engine.fetchone(sql.replace("?", "%s"), params)
        return await self.storage.db.fetchone(sql, params)  # type: ignore[attr-defined]

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        engine = self._postgres()
        if engine is not None:
            await engine.execute(sql.replace("?", "%s"), params)
            return
        await self.storage.db.execute(sql, params)  # type: ignore[attr-defined]


def db_rows(app: web.Application) -> Rows:
    return Rows(app)


async def record_token(app: web.Application, claims: Claims) -> None:
    """Put a minted token in the app's ledger, through the storage's batch (as
    the request processor records the tokens it mints), on either engine."""
    token = issued(claims)
    await app[keys.storage].batch(lambda batch: batch.ledger.record_many([token]))
