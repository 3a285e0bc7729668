"""The ``reset_requests`` queue between the form and the mailer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .wakeups import Watch

FAILED_KEPT = 7 * 86400  # seconds a set-aside request stays listed


@dataclass(frozen=True)
class QueuedRequest:
    id: int
    email_norm: str
    client_ip: str
    user_agent: str
    limited: bool
    email: str | None = None  # as typed, trimmed; None for requests queued before v5
    lang: str = "en"  # of the page that asked (requests queued before v8: English)


@dataclass(frozen=True)
class FailedRequest:
    """A request set aside: when it came, when it was given up, and why."""

    id: int
    created_at: float
    done_at: float
    failure: str


# (email_norm, email as typed, client_ip, user_agent, limited, lang)
NewRequest = tuple[str, str | None, str, str, bool, str]


class RequestStore(Protocol):
    async def pending(self, limit: int) -> list[QueuedRequest]:
        """The oldest ``limit`` requests not yet done (a read; claiming is separate)."""
        ...

    async def failed(self, since: float) -> list[FailedRequest]:
        """Requests set aside since ``since``, oldest first."""
        ...

    async def purge(self, older_than: float) -> int:
        """Forget requests done before ``older_than``; set-aside ones are kept
        :data:`FAILED_KEPT` seconds longer."""
        ...

    def watch(self, wake: Callable[[], None]) -> Watch:
        """Call ``wake()`` when another process may have queued requests, until
        the returned watch is stopped. A hint only: the processor polls all the
        same. While the watch lasts, a store shared by several processes may
        keep what :meth:`pending` returns from the others' reads until the next
        read (so that one processor only looks up and renders a request)."""
        ...


class RequestsInBatch(Protocol):
    def add_many(self, rows: Sequence[NewRequest]) -> None:
        """Queue the requests, created at the batch's clock."""
        ...

    def claim(self, ids: list[int]) -> set[int]:
        """Mark the requests ``ids`` done; returns those this call marked (any
        another instance claimed first are not among them)."""
        ...

    def record_failures(self, failures: Sequence[tuple[int, str]]) -> None:
        """Note why each claimed request (id, failure) was set aside."""
        ...
