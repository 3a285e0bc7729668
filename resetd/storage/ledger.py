"""The token ledger's storage: every minted ``jti`` and what became of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class IssuedToken(NamedTuple):
    """A minted token, as the ledger records it."""

    jti: str
    user_id: int
    issued_at: int
    expires_at: int


class LedgerEntry(NamedTuple):
    expires_at: float
    used_at: float | None
    burned_at: float | None


class LedgerStore(Protocol):
    async def entry(self, jti: str) -> LedgerEntry | None:
        """The ledger's row for ``jti``; None when it was never recorded."""
        ...

    async def record_failure(self, jti: str, limit: int, now: float) -> bool:
        """Count a refused password POST; burn the token at ``limit``. True if burned now."""
        ...


class LedgerInTransaction(Protocol):
    async def consume(self, jti: str, now: float) -> bool:
        """Mark used if live at ``now``; exactly one concurrent caller gets True."""
        ...


class LedgerInBatch(Protocol):
    def record_many(self, tokens: Sequence[IssuedToken]) -> None: ...
