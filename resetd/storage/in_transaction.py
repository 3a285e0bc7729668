"""The stores' views of one transaction, for either engine.

A :class:`~.transaction.Transaction` or :class:`~.transaction.Batch` hands
each store's statements the engine's handle on the transaction (an aiosqlite
connection, a psycopg transaction, a sqlite3 or psycopg connection in the
writer thread) and the transaction's ``now``. What differs between the
engines is only the handle and the SQL, so each engine lists its statement
functions once (:class:`TxStatements`, :class:`BatchStatements`) and these
views pass them the handle. How accounts write a hash differs by where the
accounts live, so each engine keeps its own view of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..reset.compose import ComposedMail
from .audit import AuditRow
from .ledger import IssuedToken
from .limits import Hit
from .outbox import NewEvent, NewMail
from .requests import NewRequest

H = TypeVar("H")  # the engine's handle on the transaction


@dataclass(frozen=True)
class TxStatements(Generic[H]):
    """One engine's statements inside a Transaction, each taking its handle first."""

    consume: Callable[[H, str, float], Awaitable[bool]]
    forget: Callable[[H, Sequence[str]], Awaitable[None]]
    end_sessions: Callable[[H, int], Awaitable[None]]
    enqueue: Callable[[H, str, NewMail, float], Awaitable[int]]
    enqueue_event: Callable[[H, NewEvent, float], Awaitable[int]]
    record: Callable[[H, float, AuditRow], Awaitable[None]]


class InTransaction(Generic[H]):
    """The handle, ``now`` and statements every view of one Transaction shares."""

    def __init__(self, handle: H, now: float, sql: TxStatements[H]) -> None:
        self.handle, self.now, self.sql = handle, now, sql
        self.ledger = _TxLedger(self)
        self.limits = _TxLimits(self)
        self.sessions = _TxSessions(self)
        self.outbox = _TxOutbox(self)
        self.audit = _TxAudit(self)


class _TxLedger(Generic[H]):
    def __init__(self, tx: InTransaction[H]) -> None:
        self.tx = tx

    async def consume(self, jti: str, now: float) -> bool:
        return await self.tx.sql.consume(self.tx.handle, jti, now)


class _TxLimits(Generic[H]):
    def __init__(self, tx: InTransaction[H]) -> None:
        self.tx = tx

    async def forget(self, buckets: Sequence[str]) -> None:
        await self.tx.sql.forget(self.tx.handle, buckets)


class _TxSessions(Generic[H]):
    def __init__(self, tx: InTransaction[H]) -> None:
        self.tx = tx

    async def end_all(self, user_id: int) -> None:
        await self.tx.sql.end_sessions(self.tx.handle, user_id)


class _TxOutbox(Generic[H]):
    def __init__(self, tx: InTransaction[H]) -> None:
        self.tx = tx

    async def enqueue(
        self,
        kind: str,
        mail: ComposedMail,
        *,
        user_id: int | str | None = None,
        expires_at: float | None = None,
    ) -> int:
        new = NewMail(mail, user_id, expires_at)
        return await self.tx.sql.enqueue(self.tx.handle, kind, new, self.tx.now)

    async def enqueue_event(self, event: NewEvent) -> int:
        return await self.tx.sql.enqueue_event(self.tx.handle, event, self.tx.now)


class _TxAudit(Generic[H]):
    def __init__(self, tx: InTransaction[H]) -> None:
        self.tx = tx

    async def record(
        self,
        event: str,
        outcome: str,
        *,
        user_id: int | str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        row: AuditRow = (event, outcome, user_id, client_ip, user_agent)
        await self.tx.sql.record(self.tx.handle, self.tx.now, row)


@dataclass(frozen=True)
class BatchStatements(Generic[H]):
    """One engine's statements inside a Batch (in the writer thread), each
    taking its connection first."""

    add_requests: Callable[[H, Sequence[NewRequest], float], None]
    claim_requests: Callable[[H, list[int], float], set[int]]
    record_failures: Callable[[H, Sequence[tuple[int, str]]], None]
    record_tokens: Callable[[H, Sequence[IssuedToken]], None]
    hit_many: Callable[[H, list[Hit], float], list[int | None]]
    enqueue_many: Callable[[H, str, Sequence[NewMail], float], None]
    enqueue_events: Callable[[H, Sequence[NewEvent], float], None]
    record_audit: Callable[[H, float, Sequence[AuditRow]], None]


class InBatch(Generic[H]):
    """A :class:`~.transaction.Batch` on the connection ``conn`` of the writer
    thread, inside its transaction."""

    def __init__(self, conn: H, now: float, sql: BatchStatements[H]) -> None:
        self.conn, self.now, self.sql = conn, now, sql
        self.requests = _BatchRequests(self)
        self.ledger = _BatchLedger(self)
        self.limits = _BatchLimits(self)
        self.outbox = _BatchOutbox(self)
        self.audit = _BatchAudit(self)


class _BatchRequests(Generic[H]):
    def __init__(self, b: InBatch[H]) -> None:
        self.b = b

    def add_many(self, rows: Sequence[NewRequest]) -> None:
        self.b.sql.add_requests(self.b.conn, rows, self.b.now)

    def claim(self, ids: list[int]) -> set[int]:
        return self.b.sql.claim_requests(self.b.conn, ids, self.b.now)

    def record_failures(self, failures: Sequence[tuple[int, str]]) -> None:
        self.b.sql.record_failures(self.b.conn, failures)


class _BatchLedger(Generic[H]):
    def __init__(self, b: InBatch[H]) -> None:
        self.b = b

    def record_many(self, tokens: Sequence[IssuedToken]) -> None:
        self.b.sql.record_tokens(self.b.conn, tokens)


class _BatchLimits(Generic[H]):
    def __init__(self, b: InBatch[H]) -> None:
        self.b = b

    def hit_many(self, hits: list[Hit]) -> list[int | None]:
        return self.b.sql.hit_many(self.b.conn, hits, self.b.now)


class _BatchOutbox(Generic[H]):
    def __init__(self, b: InBatch[H]) -> None:
        self.b = b

    def enqueue_many(self, kind: str, mails: Sequence[NewMail]) -> None:
        self.b.sql.enqueue_many(self.b.conn, kind, mails, self.b.now)

    def enqueue_events(self, events: Sequence[NewEvent]) -> None:
        self.b.sql.enqueue_events(self.b.conn, events, self.b.now)


class _BatchAudit(Generic[H]):
    def __init__(self, b: InBatch[H]) -> None:
        self.b = b

    def record_many(self, events: Sequence[AuditRow]) -> None:
        self.b.sql.record_audit(self.b.conn, self.b.now, events)
