"""Old history: what :mod:`resetd.retention` prunes, one batch at a time."""

from __future__ import annotations

from typing import Protocol

# The kinds of history that are pruned: sent outbox rows, ledger entries of
# expired tokens, audit events.
HISTORY = ("outbox", "reset_tokens", "audit")


class RetentionStore(Protocol):
    async def prune(self, kind: str, cutoff: float, limit: int) -> int:
        """Delete up to ``limit`` rows of ``kind`` (one of :data:`HISTORY`) older
        than ``cutoff``, in one short transaction; returns how many went."""
        ...
