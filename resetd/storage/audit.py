"""The audit trail's storage: event names and outcomes, never a secret."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# (event, outcome, user_id, client_ip, user_agent)
AuditRow = tuple[str, str, int | str | None, str | None, str | None]
# Characters of a User-Agent kept in a row.
USER_AGENT_LIMIT = 300


def audit_row(event: str, outcome: str, **kw: str | int | None) -> AuditRow:
    """The row of :meth:`AuditStore.add`'s arguments."""
    ip, agent = kw.get("client_ip"), kw.get("user_agent")
    return (
        event,
        outcome,
        kw.get("user_id"),
        None if ip is None else str(ip),
        None if agent is None else str(agent),
    )


def stored_row(at: float, row: AuditRow) -> tuple[object, ...]:
    """The values of the audit table's (at, event, user_id, client_ip,
    user_agent, outcome) for ``row``, on either engine."""
    event, outcome, user_id, client_ip, user_agent = row
    uid = None if user_id is None else str(user_id)
    return (at, event, uid, client_ip, (user_agent or "")[:USER_AGENT_LIMIT], outcome)


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: float
    event: str
    user_id: str | None
    client_ip: str | None
    user_agent: str | None
    outcome: str


class AuditStore(Protocol):
    async def add(self, event: str, outcome: str, **kw: str | int | None) -> None:
        """Record (``user_id``, ``client_ip``, ``user_agent`` by keyword) in a
        transaction of its own."""
        ...

    async def recent(self, limit: int = 100) -> list[AuditEvent]: ...


class AuditInTransaction(Protocol):
    async def record(
        self,
        event: str,
        outcome: str,
        *,
        user_id: int | str | None = None,
        client_ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Inside the transaction, so the trail matches what happened."""
        ...


class AuditInBatch(Protocol):
    def record_many(self, events: Sequence[AuditRow]) -> None: ...
