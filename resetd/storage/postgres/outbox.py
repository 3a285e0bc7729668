# PLACEHOLDER: replaced by work/pgqueue at merge
"""The outbox on PostgreSQL: names only, so that the storage wires and type-checks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from ..errors import StorageErrors
from ..outbox import Backlog, NewEvent, NewMail, OutboxEntry, OutgoingMail, RelayStatusStore
from .engine import PostgresEngine, Transaction


class PostgresOutbox:
    owner: str
    relay_status: RelayStatusStore
    errors: StorageErrors

    def __init__(self, engine: PostgresEngine, owner: str | None = None) -> None:
        self.engine = engine
        self.owner = owner or ""

    async def recover(self, channel: str = "mail") -> int:
        raise NotImplementedError

    async def release_orphans(self) -> int:
        raise NotImplementedError

    async def renew(self, mail_ids: Collection[int], lease: float) -> int:
        raise NotImplementedError

    async def claim_due(
        self, limit: int, lease: float, held: Collection[int] = (), channel: str = "mail"
    ) -> list[OutgoingMail]:
        raise NotImplementedError

    async def next_due_at(self, channel: str = "mail") -> float | None:
        raise NotImplementedError

    async def mark_sent(self, mails: Sequence[OutgoingMail]) -> list[OutgoingMail]:
        raise NotImplementedError

    async def mark_failed(
        self, mail: OutgoingMail, error: str, why: str, *, keep_last_error: bool = False
    ) -> bool:
        raise NotImplementedError

    async def schedule_retry(self, mail_id: int, at: float, error: str) -> bool:
        raise NotImplementedError

    async def release(self, mail_ids: Collection[int]) -> None:
        raise NotImplementedError

    async def counts(self) -> dict[str, int]:
        raise NotImplementedError

    async def backlog(self, now: float) -> Backlog:
        raise NotImplementedError

    async def list(self, include_sent: bool = False) -> list[OutboxEntry]:
        raise NotImplementedError

    async def get(self, mail_id: int) -> OutboxEntry | None:
        raise NotImplementedError

    async def retry(self, mail_id: int | None) -> tuple[int, int]:
        raise NotImplementedError


async def enqueue(tx: Transaction, kind: str, new: NewMail, now: float) -> int:
    raise NotImplementedError


async def enqueue_event(tx: Transaction, event: NewEvent, now: float) -> int:
    raise NotImplementedError


def enqueue_many(
    conn: psycopg.Connection[Any], kind: str, mails: Sequence[NewMail], now: float
) -> None:
    raise NotImplementedError


def enqueue_events(conn: psycopg.Connection[Any], events: Sequence[NewEvent], now: float) -> None:
    raise NotImplementedError
