"""The limits in front of every password check at sign-in.

Three gates, cheapest first:

1. **Sign-ins under way per client** (an IPv4 address or an IPv6 /64) in this
   process: past ``[limits] logins_in_progress_per_ip`` → 429 at once. However
   many connections one client opens, it holds that many places in the queue.
2. **Failed sign-ins** per account identifier and per client, counted in SQLite
   (shared by instances, kept across restarts): a full bucket → 429 with
   Retry-After until its window ends, never longer. The account's bucket is the
   normalised identifier as typed, whether an account has it or not, so known
   and unknown names get the same answers.
3. **The hashing queue** (:mod:`resetd.hash_queue`, ``[limits]
   logins_in_progress`` places in the process): the check waits its turn there,
   ordered by the client's failed sign-ins this window (read in gate 2), so a
   real user goes before clients that have been guessing; a check with no place
   → 503 at once, and the attempt counts as no failure. A client whose
   failures this process has seen is refused so before gate 2, when the queue
   has no place for it: a flood of guesses costs no database work.

An attempt is counted before its password is checked, so concurrent guesses
cannot all slip in under a limit, and given back when the password was right
or it was refused a place. A password reset forgets the account's failures
(:func:`account_buckets`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .config import LimitsConfig
from .hash_queue import HashingBusy, HashQueue, Standing
from .i18n import N_
from .limits import Hit, Taken, client_bucket
from .login_timing import FailureTiming
from .passwords import Hasher
from .storage.limits import LimitsStore
from .users import normalize

# Shown in the language of the page (resetd/login.py translates them).
THROTTLED = N_(
    "Too many failed sign-ins for this account or from your network. Wait a few minutes "
    "and try again, or reset your password."
)
CLIENT_BUSY = N_("Too many sign-ins at once from your network. Wait a moment and try again.")
BUSY = N_("Sign-in is busy. Wait a moment and try again.")
# Clients whose failed sign-ins are remembered in memory (about 100 bytes each).
MAX_CLIENTS_SEEN = 10_000


class SigninRefused(Exception):
    """An attempt refused before any password was checked."""

    def __init__(self, status: int, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.message = message


def account_buckets(*identifiers: str) -> list[str]:
    """The failed-sign-in buckets of what a user may type: username, email."""
    return [f"login:account:{normalize(i)}" for i in identifiers]


class Attempt:
    """One admitted sign-in attempt (see :meth:`LoginGuard.attempt`)."""

    def __init__(self, guard: LoginGuard, standing: Standing, taken: Taken) -> None:
        self._guard = guard
        self._taken = taken
        self._window_start = taken.counted[1][1]  # the client bucket's
        self._checked = False
        # Who waits in the hashing queue: the client, with the failures recorded
        # for it before this attempt (an attempt of its own still under way
        # counts as one: it is counted before it is checked).
        self.standing = standing

    @property
    def filled(self) -> list[str]:
        """Which limits this attempt filled, should it fail: "account", "client"."""
        return [n for n, f in zip(("account", "client"), self._taken.filled, strict=True) if f]

    async def check(self, hasher: Hasher, stored: str | None, password: str) -> bool:
        """Check ``password`` against ``stored`` (None: no such account).

        A failure takes as long as a check of the slowest kind of hash held
        (:mod:`resetd.login_timing`); the padding sleeps after the hashing
        thread is given back. Raises :class:`SigninRefused` (503) when the
        hashing queue has no place for this check, or a better-placed one took it.
        Returns only when the hashing thread is done with it, even if cancelled."""
        assert not self._checked, "one check per attempt"
        self._checked = True
        try:
            ok, kind, took = await hasher.verify_timed(stored, password, self.standing)
        except HashingBusy as busy:
            await self._give_back()
            raise SigninRefused(503, busy.retry_after, BUSY) from None
        timing = self._guard.timing
        timing.observe(kind, took)
        if not ok:
            await timing.pad(took)
        return ok

    async def succeeded(self) -> None:
        """The password was right: this attempt counts as no failure."""
        await self._give_back()

    async def _give_back(self) -> None:
        await self._guard.counters.give_back(self._taken.counted)
        self._guard._saw(self.standing.client, self._window_start, self.standing.failures)


class LoginGuard:
    def __init__(
        self,
        limits: LimitsConfig,
        counters: LimitsStore,
        timing: FailureTiming,
        clock: Callable[[], float],
        queue: HashQueue,
    ) -> None:
        self.limits = limits
        self.counters = counters
        self.timing = timing
        self.clock = clock
        self.queue = queue
        self._per_client: Counter[str] = Counter()
        # client → (its window's start, failed sign-ins counted then), as last seen
        # here, oldest first; an attempt under way counts until it is given back.
        self._failures: dict[str, tuple[int, int]] = {}

    @asynccontextmanager
    async def attempt(self, ip: str, identifier: str) -> AsyncIterator[Attempt]:
        """Admit one attempt to sign in as ``identifier`` from ``ip``; raises
        :class:`SigninRefused` (before any password is checked) when a limit says no.

        The attempt holds a place of its client until it ends, its failure's
        padding included, which slows a flood down at no cost."""
        lim = self.limits
        client = client_bucket(ip)
        if self._per_client[client] >= lim.logins_in_progress_per_ip:
            raise SigninRefused(429, 1, CLIENT_BUSY)
        seen = self._failures_seen(client)
        if seen and not self.queue.has_place(Standing(client, seen)):
            raise SigninRefused(503, HashingBusy.retry_after, BUSY)
        self._per_client[client] += 1
        try:
            hits = [
                Hit(
                    account_buckets(identifier)[0],
                    lim.failed_logins_per_account,
                    lim.failed_logins_per_account_window,
                ),
                Hit(
                    f"login:ip:{client}", lim.failed_logins_per_ip, lim.failed_logins_per_ip_window
                ),
            ]
            taken = await self.counters.take(hits)
            if isinstance(taken, int):
                raise SigninRefused(429, taken, THROTTLED)
            failures = taken.counts[1]  # the client's, this attempt included
            self._saw(client, taken.counted[1][1], failures)
            yield Attempt(self, Standing(client, failures - 1), taken)
        finally:
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    def _saw(self, client: str, window_start: int, failures: int) -> None:
        self._failures.pop(client, None)
        if len(self._failures) >= MAX_CLIENTS_SEEN:
            del self._failures[next(iter(self._failures))]
        self._failures[client] = (window_start, failures)

    def _failures_seen(self, client: str) -> int:
        """The client's failed sign-ins in the current window as last seen here
        (0 when not seen in it); other instances' may be missing."""
        window_start, failures = self._failures.get(client, (0, 0))
        if self.clock() >= window_start + self.limits.failed_logins_per_ip_window:
            return 0
        return failures
