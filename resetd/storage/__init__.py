"""Storage: one interface per concern, and the units of work that span them.

Logic modules import these types only; they never see a driver's connection
or a line of SQL. :mod:`resetd.storage.sqlite` implements them on SQLite and
:mod:`resetd.storage.postgres` on PostgreSQL, for several instances sharing one
database; only the app factory and the CLI choose the implementation.

- :mod:`~resetd.storage.accounts` resetd's users, or an application's table
- :mod:`~resetd.storage.sessions` signed-in sessions
- :mod:`~resetd.storage.ledger` reset tokens and what became of them
- :mod:`~resetd.storage.limits` rate-limit counters
- :mod:`~resetd.storage.requests` queued reset requests
- :mod:`~resetd.storage.outbox` mail and webhook events, claims, relay status
- :mod:`~resetd.storage.audit` the audit trail
- :mod:`~resetd.storage.retention` pruning old history
- :mod:`~resetd.storage.wakeups` telling a worker that another instance queued work
- :mod:`~resetd.storage.transaction` :class:`Transaction` and :class:`Batch`
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from .accounts import AccountStore, UserAdmin
from .audit import AuditStore
from .errors import StorageErrors
from .ledger import LedgerStore
from .limits import LimitsStore
from .outbox import OutboxStore
from .requests import RequestStore
from .retention import RetentionStore
from .sessions import SessionRows
from .transaction import Batch, Transaction

T = TypeVar("T")
P = ParamSpec("P")


class Storage(Protocol):
    """resetd's database, every concern of it, for one process (``owner``)."""

    errors: StorageErrors
    accounts: AccountStore  # where accounts live: resetd's users or an app's table
    users: UserAdmin  # resetd's own users table
    sessions: SessionRows
    ledger: LedgerStore
    limits: LimitsStore
    requests: RequestStore
    outbox: OutboxStore
    audit: AuditStore
    retention: RetentionStore

    async def now(self) -> float:
        """The clock every instance sharing this storage compares."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with storage.transaction() as tx:`` one unit of work."""
        ...

    async def batch(
        self, fn: Callable[Concatenate[Batch, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(batch, *args, **kwargs)`` as one transaction in the writer
        thread: it commits when ``fn`` returns and rolls back when it raises.
        ``fn`` must not block on anything but the database."""
        ...

    async def schema_is_current(self) -> bool:
        """Whether the schema is at the version this resetd migrates to; raises
        one of ``errors.error`` when the database does not answer."""
        ...

    async def close(self) -> None: ...


__all__ = ["Batch", "Storage", "StorageErrors", "Transaction"]
