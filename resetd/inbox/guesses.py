"""Failed guesses of the dev inbox's password, counted per client and overall.

HTTP basic auth and SMTP AUTH share one :class:`GuessThrottle`. Past a
client's limit, or the limit for all clients together (a guesser with many
addresses), every attempt is refused without being checked until the window
ends, so a correct guess made while throttled tells nothing. Counts live in
memory, beside the inbox they guard (one per process); only the operator can
restart it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

PER_CLIENT = 10
OVERALL = 100
WINDOW = 60.0
# Past this many clients with recent failures, new ones count toward the
# overall limit only, so a flood of addresses cannot grow the table.
MAX_CLIENTS = 10_000


class GuessThrottle:
    """At most ``per_client`` failures per client and ``overall`` in total within
    ``window`` seconds of the first failure counted (so a window never ends
    halfway through a burst of guesses)."""

    def __init__(
        self,
        per_client: int = PER_CLIENT,
        overall: int = OVERALL,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self.clock = clock
        self._overall = _Count(0.0, 0)
        self._clients: dict[str, _Count] = {}

    def _current(self, count: _Count | None, now: float) -> _Count | None:
        return count if count is not None and now - count.since < self.window else None

    def retry_after(self, client: str) -> int | None:
        """None if ``client`` may try now, else whole seconds until it may."""
        now = self.clock()
        waits = [
            count.since + self.window - now
            for count, limit in (
                (self._current(self._overall, now), self.overall),
                (self._current(self._clients.get(client), now), self.per_client),
            )
            if count is not None and count.failures >= limit
        ]
        return max(1, int(max(waits) + 0.999)) if waits else None

    def failed(self, client: str) -> None:
        """Count one wrong password from ``client``."""
        now = self.clock()
        self._overall = _bump(self._current(self._overall, now), now)
        count = self._current(self._clients.get(client), now)
        if count is None and len(self._clients) >= MAX_CLIENTS:
            self._clients = {c: n for c, n in self._clients.items() if self._current(n, now)}
            if len(self._clients) >= MAX_CLIENTS:
                return
        self._clients[client] = _bump(count, now)


@dataclass(frozen=True)
class _Count:
    since: float
    failures: int


def _bump(count: _Count | None, now: float) -> _Count:
    return _Count(now, 1) if count is None else _Count(count.since, count.failures + 1)
