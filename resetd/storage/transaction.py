"""Units of work: what must happen together, or not at all.

A :class:`Transaction` is asynchronous, for logic that awaits between its
steps (the password change). A :class:`Batch` is a synchronous function's
view of one transaction run in the storage's writer thread, for the hot
paths that group many requests into one commit (the request intake, the
request processor): one hand-off per batch, however many rows it writes.

Both carry ``now``: the storage's clock when the transaction began, the one
time every instance compares (rate-limit windows, leases, token ages).
"""

from __future__ import annotations

from typing import Protocol

from .accounts import AccountsInTransaction
from .audit import AuditInBatch, AuditInTransaction
from .ledger import LedgerInBatch, LedgerInTransaction
from .limits import LimitsInBatch, LimitsInTransaction
from .outbox import OutboxInBatch, OutboxInTransaction
from .requests import RequestsInBatch
from .sessions import SessionsInTransaction


class Transaction(Protocol):
    """Everything done through it commits together when the ``async with``
    block ends, and rolls back when it raises."""

    @property
    def now(self) -> float: ...

    @property
    def accounts(self) -> AccountsInTransaction: ...

    @property
    def ledger(self) -> LedgerInTransaction: ...

    @property
    def limits(self) -> LimitsInTransaction: ...

    @property
    def sessions(self) -> SessionsInTransaction: ...

    @property
    def outbox(self) -> OutboxInTransaction: ...

    @property
    def audit(self) -> AuditInTransaction: ...


class Batch(Protocol):
    """A transaction as a function run in the writer thread sees it: commits
    when the function returns, rolls back when it raises."""

    @property
    def now(self) -> float: ...

    @property
    def requests(self) -> RequestsInBatch: ...

    @property
    def ledger(self) -> LedgerInBatch: ...

    @property
    def limits(self) -> LimitsInBatch: ...

    @property
    def outbox(self) -> OutboxInBatch: ...

    @property
    def audit(self) -> AuditInBatch: ...
