"""The limits in front of every password check at sign-in.

Three gates, cheapest first; each answers at once instead of queueing:

1. **Sign-ins under way per client** (an IPv4 address or an IPv6 /64) in this
   process: past ``[limits] logins_in_progress_per_ip`` → 429. However many
   connections one client opens, it holds that many places in the hashing queue.
2. **Sign-ins under way in this process**: past ``[limits] logins_in_progress``
   → 503. The hashing thread's queue is bounded, so a real user waits behind at
   most that many hashes, never behind a whole flood.
3. **Failed sign-ins** per account identifier and per client, counted in SQLite
   (shared by instances, kept across restarts): a full bucket → 429 with
   Retry-After until its window ends, never longer. The account's bucket is the
   normalised identifier as typed, whether an account has it or not, so known
   and unknown names get the same answers.

An attempt is counted before its password is checked, so concurrent guesses
cannot all slip in under a limit, and given back when the password was right.
A password reset forgets the account's failures (:func:`account_buckets`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .config import LimitsConfig
from .db import Database
from .limits import Hit, RateLimiter, Taken, client_bucket
from .login_timing import FailureTiming
from .passwords import Hasher
from .users import normalize

THROTTLED = (
    "Too many failed sign-ins for this account or from your network. Wait a few minutes "
    "and try again, or reset your password."
)
CLIENT_BUSY = "Too many sign-ins at once from your network. Wait a moment and try again."
BUSY = "Sign-in is busy. Wait a moment and try again."


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

    def __init__(self, guard: LoginGuard, client: str, taken: Taken) -> None:
        self._guard = guard
        self._client = client
        self._taken = taken
        self._hash: asyncio.Future[tuple[bool, str, float]] | None = None

    @property
    def filled(self) -> list[str]:
        """Which limits this attempt filled, should it fail: "account", "client"."""
        return [n for n, f in zip(("account", "client"), self._taken.filled, strict=True) if f]

    async def check(self, hasher: Hasher, stored: str | None, password: str) -> bool:
        """Check ``password`` against ``stored`` (None: no such account).

        A failure takes as long as a check of the slowest kind of hash held
        (:mod:`resetd.login_timing`)."""
        assert self._hash is None, "one check per attempt"
        self._hash = asyncio.ensure_future(hasher.verify_timed(stored, password))
        # The process-wide place is the hashing queue's: it is freed when the hash
        # is done, even if this request was cancelled meanwhile (a thread cannot be).
        self._hash.add_done_callback(lambda _: self._guard._end_check())
        ok, kind, took = await asyncio.shield(self._hash)
        timing = self._guard.timing
        timing.observe(kind, took)
        if not ok:
            await timing.pad(took)
        return ok

    async def succeeded(self) -> None:
        """The password was right: this attempt counts as no failure."""
        await self._guard.db.writer.run(RateLimiter.give_back, self._taken.counted)

    def _close(self) -> None:
        if self._hash is None:
            self._guard._end_check()
            self._guard._end_client(self._client)
        elif self._hash.done():
            self._guard._end_client(self._client)
        else:  # cancelled while hashing: the client's place is taken until the hash ends
            self._hash.add_done_callback(lambda _: self._guard._end_client(self._client))


class LoginGuard:
    def __init__(
        self,
        limits: LimitsConfig,
        db: Database,
        timing: FailureTiming,
        clock: Callable[[], float],
    ) -> None:
        self.limits = limits
        self.db = db
        self.timing = timing
        self.clock = clock
        self.in_progress = 0
        self._per_client: Counter[str] = Counter()

    @asynccontextmanager
    async def attempt(self, ip: str, identifier: str) -> AsyncIterator[Attempt]:
        """Admit one attempt to sign in as ``identifier`` from ``ip``; raises
        :class:`SigninRefused` (before any password is checked) when a limit says no.

        The attempt holds a place of its client until it ends (its failure's
        padding included, which slows a flood down at no cost), and a place in
        the process until its password check is done."""
        lim = self.limits
        client = client_bucket(ip)
        if self._per_client[client] >= lim.logins_in_progress_per_ip:
            raise SigninRefused(429, 1, CLIENT_BUSY)
        if self.in_progress >= lim.logins_in_progress:
            raise SigninRefused(503, 1, BUSY)
        self._per_client[client] += 1
        self.in_progress += 1
        attempt: Attempt | None = None
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
            taken = await self.db.writer.run(RateLimiter.take, hits, self.clock())
            if isinstance(taken, int):
                raise SigninRefused(429, taken, THROTTLED)
            attempt = Attempt(self, client, taken)
            yield attempt
        finally:
            if attempt is not None:
                attempt._close()
            else:
                self._end_check()
                self._end_client(client)

    def _end_check(self) -> None:
        self.in_progress -= 1

    def _end_client(self, client: str) -> None:
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]
