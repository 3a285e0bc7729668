"""Rate-limit counters: fixed windows shared by every instance on one database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# A counted hit: (bucket, window_start), so it can be given back in its own window.
Counted = tuple[str, int]


@dataclass(frozen=True)
class Hit:
    bucket: str
    limit: int
    window: int


@dataclass(frozen=True)
class Taken:
    """What :meth:`LimitsStore.take` counted, and which hits filled their bucket."""

    counted: list[Counted]
    filled: list[bool]
    # Hits in each bucket's window, this one included.
    counts: list[int]


def window_start(now: float, window: int) -> int:
    return int(now // window * window)


class LimitsStore(Protocol):
    async def take(self, hits: Sequence[Hit]) -> int | Taken:
        """All or nothing, in one transaction at the storage's clock: count one hit
        in every bucket if each is under its limit. Returns what was counted (for
        :meth:`give_back`), or, when a bucket is full, the seconds until every
        full bucket's window ends (for Retry-After); a refused attempt counts
        nowhere."""
        ...

    async def give_back(self, counted: Sequence[Counted]) -> None:
        """Uncount hits that :meth:`take` counted (the attempt turned out fine)."""
        ...

    async def purge(self, now: float) -> int:
        """Drop windows that ended more than a day before ``now``."""
        ...


class LimitsInTransaction(Protocol):
    async def forget(self, buckets: Sequence[str]) -> None:
        """Drop every window of ``buckets``."""
        ...


class LimitsInBatch(Protocol):
    def hit_many(self, hits: list[Hit]) -> list[int | None]:
        """Count every hit at the batch's clock. Returns, in order, None for a hit
        within its limit, else the seconds until its window resets (for
        Retry-After). Hits over the limit are still counted."""
        ...
