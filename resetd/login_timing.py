"""A failed sign-in takes as long as a check of the slowest kind of hash held.

The time a wrong password takes must not say whether the account exists, nor
which kind of hash it has: an account migrated with a Werkzeug
``pbkdf2:sha256:600000`` hash took 185 ms to refuse, an unknown name (checked
against a dummy in the target format) 112 ms.

Checking unknown names against a dummy of the slowest kind would not do: with
two kinds in the table, accounts of the faster kind would then answer sooner
than unknown names. So every failed check, unknown name or wrong password, is
padded with a sleep (no CPU) up to a floor: the cost of the slowest kind of
hash held, with a margin. Kinds are hashes' algorithms and parameters
(:func:`~resetd.passwords.hash_kind`); at start one stored hash of each kind is
checked to measure it, and every check afterwards updates its kind's cost, so
the floor follows the machine's load. The pad is computed from the time the
check took in its thread, so the wait for the hashing thread, which every
kind shares, adds to every answer alike.

Successful checks are not padded: the answer itself says the password was right.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .passwords import Hasher, hash_kind

MARGIN = 1.25
# How fast a kind's cost comes back down after a slow check (per check of it):
# up at once, down slowly, so a loaded moment raises the floor for a while.
DECAY = 0.1
MAX_KINDS = 32
CALIBRATION_PASSWORD = "resetd-calibration, never a password"  # noqa: S105


class FailureTiming:
    """The floor a failed password check is padded up to."""

    def __init__(self) -> None:
        self._cost: dict[str, float] = {}

    def observe(self, kind: str, seconds: float) -> None:
        """Record that checking a hash of ``kind`` took ``seconds``."""
        if kind not in self._cost and len(self._cost) >= MAX_KINDS:
            kind = max(self._cost, key=self._cost.__getitem__)  # fold into the slowest
        old = self._cost.get(kind)
        if old is None or seconds > old:
            self._cost[kind] = seconds
        else:
            self._cost[kind] = old + (seconds - old) * DECAY

    @property
    def floor(self) -> float:
        return max(self._cost.values(), default=0.0) * MARGIN

    async def pad(self, took: float) -> None:
        """Sleep for what ``took`` lacks of the floor."""
        rest = self.floor - took
        if rest > 0:
            await asyncio.sleep(rest)

    async def calibrate(self, hasher: Hasher, samples: Iterable[str]) -> None:
        """Measure one check of each kind among ``samples`` and of the target's dummy.

        A wrong password costs what the right one does and changes nothing, so
        real stored hashes serve as samples."""
        by_kind = {hash_kind(s): s for s in samples}
        checks: list[str | None] = [None, *by_kind.values()]
        for stored in checks:
            _, kind, took = await hasher.verify_timed(stored, CALIBRATION_PASSWORD)
            self.observe(kind, took)
