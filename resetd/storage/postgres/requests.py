# PLACEHOLDER: replaced by work/pgqueue at merge
"""The reset-request queue on PostgreSQL: names only, so that the storage wires
and type-checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ..requests import FailedRequest, NewRequest, QueuedRequest
from .engine import PostgresEngine


class PostgresRequests:
    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine

    async def pending(self, limit: int) -> list[QueuedRequest]:
        raise NotImplementedError

    async def failed(self, since: float) -> list[FailedRequest]:
        raise NotImplementedError

    async def purge(self, older_than: float) -> int:
        raise NotImplementedError


def add_many(conn: psycopg.Connection[Any], rows: Sequence[NewRequest], now: float) -> None:
    raise NotImplementedError


def claim(conn: psycopg.Connection[Any], ids: list[int], now: float) -> set[int]:
    raise NotImplementedError


def record_failures(conn: psycopg.Connection[Any], failures: Sequence[tuple[int, str]]) -> None:
    raise NotImplementedError
