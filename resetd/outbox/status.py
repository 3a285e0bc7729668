"""The relay's state as the outbox last saw it: what operators are shown.

The :class:`~resetd.outbox.gate.RelayGate` keeps it in memory for ``/readyz``;
the worker also writes each change to the ``relay_status`` table (one row), so
that ``resetd outbox``, another process, can show it beside the mail.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..db import Database


@dataclass(frozen=True)
class RelayStatus:
    """``since`` is wall-clock time; ``error`` and ``hint`` are empty when healthy."""

    state: str  # unknown | ok | backing_off | tls_error | session_refused
    since: float
    error: str = ""
    hint: str = ""

    @property
    def healthy(self) -> bool:
        return self.state in ("unknown", "ok")


class RelayStatusStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, relay: str, status: RelayStatus) -> None:
        await self.db.execute(
            "INSERT INTO relay_status (id, relay, state, since, error, hint) "
            "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET relay = excluded.relay, "
            "state = excluded.state, since = excluded.since, error = excluded.error, "
            "hint = excluded.hint",
            (relay, status.state, status.since, status.error[:500], status.hint[:500]),
        )

    async def load(self) -> tuple[str, RelayStatus] | None:
        """(relay address, status), or None when the outbox has seen nothing since it started."""
        row = await self.db.fetchone(
            "SELECT relay, state, since, error, hint FROM relay_status WHERE id = 1"
        )
        if row is None:
            return None
        return row["relay"], RelayStatus(row["state"], row["since"], row["error"], row["hint"])

    async def clear(self) -> None:
        """At start: what the last run saw may have been fixed since."""
        await self.db.execute("DELETE FROM relay_status")
