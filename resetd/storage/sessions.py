"""Signed-in sessions' storage: one row per sign-in, keyed by a digest of its id."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

# The columns SessionRow.of reads, for either engine's SELECT.
SESSION_COLUMNS = "user_id, remember, created_at, last_seen"


class SessionRow(NamedTuple):
    user_id: str
    remember: bool
    created_at: float
    last_seen: float

    @classmethod
    def of(cls, row: Any) -> SessionRow | None:
        """The session of a row selected with SESSION_COLUMNS (either driver's row,
        read by column name); None for no row."""
        if row is None:
            return None
        return cls(row["user_id"], bool(row["remember"]), row["created_at"], row["last_seen"])


class Ended(NamedTuple):
    """Sessions ended by ``now``: a plain one seen last before ``idle_before`` or
    created before ``created_before``; a remembered one by the ``remember_`` pair."""

    idle_before: float
    created_before: float
    remember_idle_before: float
    remember_created_before: float


class SessionRows(Protocol):
    async def create(
        self, row_id: str, user_id: str, remember: bool, now: float, purge: Ended | None
    ) -> None:
        """Add a session (after deleting the ended ones, when ``purge`` is given)."""
        ...

    async def get(self, row_id: str) -> SessionRow | None: ...

    async def delete(self, row_id: str) -> None: ...

    async def touch(self, row_id: str, now: float) -> None:
        """Move last_seen on to ``now`` (never back)."""
        ...


class SessionsInTransaction(Protocol):
    async def end_all(self, user_id: int) -> None:
        """Delete every session of ``user_id``."""
        ...
