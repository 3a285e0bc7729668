"""Who hashes next: the scheduler in front of the password-hashing threads.

A password hash is the costliest thing a stranger can ask of resetd, and the
threads are few (one core is always left to the event loop). A plain thread
pool serves first come, first served: 40 clients guessing passwords queued
in front of every real user, whose sign-in then took a second or was refused.
So hashes wait here, in an order chosen for real users, and not in the pool:

* The pool is handed at most as many hashes as it has threads, so its own
  first-in-first-out queue never holds a backlog: each free thread goes to
  the hash picked here.
* Waiting hashes are ordered by their client's **standing**: the failed
  sign-ins recorded for the client (an IPv4 address or an IPv6 /64) in the
  current window, in doubling classes — none (good standing), 1, 2-3, 4-7, … —
  fewer first. A real user, who has no failures or a mistyped password or two,
  goes before a client that has been guessing.
* Within a class clients take turns: a client whose hash started while it had
  more waiting goes after every client still waiting for its first (a count
  kept while the client has a hash waiting or running).
* At most ``capacity`` hashes wait or run. A hash arriving at a full queue
  takes the place of the worst waiting one — worst class, then the client with
  the most waiting, then the newest — when that one is strictly worse placed
  than the newcomer would be; the hash pushed out, or else the newcomer, is
  refused at once (:class:`HashingBusy`: a 503 with Retry-After). So a client
  in good standing is refused only when every place is taken by clients in
  good standing, each waiting for a single hash.

:meth:`HashQueue.run` gives up a waiting place at once when cancelled, but a
hash under way holds its thread to the end (a thread cannot be stopped): then
``run`` returns only when the thread is done, and its place is free only then.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class HashingBusy(Exception):
    """No place for a hash: the queue is full of hashes placed no worse, or this
    one was pushed out of it by a better-placed one. Answered 503, Retry-After 1."""

    retry_after = 1


@dataclass(frozen=True)
class Standing:
    """Who asks for a hash: the client's bucket (see
    :func:`~resetd.limits.client_bucket`) and its failed sign-ins this window."""

    client: str
    failures: int = 0

    @property
    def rank(self) -> int:
        """The standing's class: 0 for no failures, then 1, 2-3, 4-7, … → 1, 2, 3, …"""
        return max(0, self.failures).bit_length()


# Hashes resetd asks for itself: start-up calibration, the command line.
RESETD = Standing("resetd")


@dataclass(eq=False)
class _Waiter:
    who: Standing
    seq: int
    arrived: int  # HashQueue.started when it arrived
    turn: asyncio.Future[bool]  # True: its thread is free; False: pushed out


@dataclass(eq=False)
class _Client:
    waiting: deque[_Waiter] = field(default_factory=deque)
    running: int = 0
    started: int = 0  # hashes started since the client last had none waiting or running


class HashQueue:
    """Hashing threads and the order in which they are given out (see the module)."""

    def __init__(self, threads: int, capacity: int) -> None:
        self.threads = threads
        self.capacity = capacity
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="resetd-hash")
        self._clients: dict[str, _Client] = {}
        self._waiting = 0
        self._seq = 0
        self.running = 0
        # Hashes started so far (a count, for the observer and diagnostics).
        self.started = 0
        # Called as each hash starts, with who asked and how many hashes started
        # while it waited: a seam for tests and diagnostics.
        self.observer: Callable[[Standing, int], None] | None = None

    @property
    def waiting(self) -> int:
        return self._waiting

    def close(self) -> None:
        """Let hashes under way finish, then end the threads."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> HashQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def run(self, who: Standing, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a hashing thread, when ``who``'s turn comes.

        Raises :class:`HashingBusy` when refused a place or pushed out of one.
        Cancelled while waiting: the place is given up at once. Cancelled while
        hashing: returns (raising CancelledError) only when the thread is done.
        """
        await self._turn(who)
        try:
            return await _outlast(asyncio.wrap_future(self._pool.submit(fn, *args)))
        finally:
            self._finish(who.client)

    async def _turn(self, who: Standing) -> None:
        self._prune()
        if self.running < self.threads and not self._waiting:
            self._start(who, self.started)
            return
        waiter = self._admit(who)
        self._dispatch()
        try:
            go = await waiter.turn
        except asyncio.CancelledError:
            if waiter.turn.cancelled():  # still waiting: the place is free again
                self._drop(waiter)
            elif waiter.turn.result():  # its thread was given to it just now
                self._finish(who.client)
            raise
        if not go:
            raise HashingBusy

    def has_place(self, who: Standing) -> bool:
        """Whether a hash asked for now by ``who`` would get a place (perhaps by
        pushing out a worse-placed one), so a caller can refuse before any work."""
        self._prune()
        return self.running + self._waiting < self.capacity or self._victim(who) is not None

    def _victim(self, who: Standing) -> _Waiter | None:
        """The waiting hash ``who`` would push out of a full queue: the worst, if
        it is strictly worse placed than ``who`` would be."""
        worst = self._worst()
        mine = self._clients.get(who.client)
        newcomer = (who.rank, (len(mine.waiting) if mine else 0) + 1)
        if worst is None or self._placing(worst) <= newcomer:
            return None
        return worst

    def _admit(self, who: Standing) -> _Waiter:
        if self.running + self._waiting >= self.capacity:
            victim = self._victim(who)
            if victim is None:
                raise HashingBusy
            self._drop(victim)
            victim.turn.set_result(False)
        mine = self._clients.get(who.client)
        if mine is None:
            mine = self._clients[who.client] = _Client()
        self._seq += 1
        waiter = _Waiter(who, self._seq, self.started, asyncio.get_running_loop().create_future())
        mine.waiting.append(waiter)
        self._waiting += 1
        return waiter

    def _placing(self, waiter: _Waiter) -> tuple[int, int]:
        """How badly placed a waiting hash is: its class, then its client's backlog."""
        return waiter.who.rank, len(self._clients[waiter.who.client].waiting)

    def _worst(self) -> _Waiter | None:
        """The hash to push out first: worst class, longest backlog, newest."""
        tails = [c.waiting[-1] for c in self._clients.values() if c.waiting]
        return max(tails, key=lambda w: (*self._placing(w), w.seq), default=None)

    def _next(self) -> _Waiter | None:
        """The hash to start next: best class, then the client with the fewest
        hashes started lately (taking turns), then the oldest."""
        heads = [(c.waiting[0], c.started) for c in self._clients.values() if c.waiting]
        best = min(heads, key=lambda h: (h[0].who.rank, h[1], h[0].seq), default=None)
        return best[0] if best else None

    def _dispatch(self) -> None:
        self._prune()
        while self.running < self.threads:
            waiter = self._next()
            if waiter is None:
                return
            self._drop(waiter, forget=False)  # it starts: its count goes on
            self._start(waiter.who, waiter.arrived)
            waiter.turn.set_result(True)

    def _start(self, who: Standing, arrived: int) -> None:
        client = self._clients.get(who.client)
        if client is None:
            client = self._clients[who.client] = _Client()
        client.running += 1
        client.started += 1
        self.running += 1
        if self.observer is not None:
            self.observer(who, self.started - arrived)
        self.started += 1

    def _finish(self, name: str) -> None:
        self.running -= 1
        client = self._clients[name]
        client.running -= 1
        self._forget_if_idle(name, client)
        self._dispatch()

    def _drop(self, waiter: _Waiter, *, forget: bool = True) -> None:
        client = self._clients.get(waiter.who.client)
        if client is None or waiter not in client.waiting:
            return
        client.waiting.remove(waiter)
        self._waiting -= 1
        if forget:
            self._forget_if_idle(waiter.who.client, client)

    def _prune(self) -> None:
        """Drop waiters cancelled since (their task has not run its cleanup yet)."""
        gone = [w for c in self._clients.values() for w in c.waiting if w.turn.cancelled()]
        for waiter in gone:
            self._drop(waiter)

    def _forget_if_idle(self, name: str, client: _Client) -> None:
        if not client.waiting and not client.running:
            del self._clients[name]


async def _outlast(fut: asyncio.Future[T]) -> T:
    """``await fut``, except that a cancellation waits for ``fut`` to finish first:
    the thread behind it cannot be stopped, and its place is free only then."""
    cancelled: asyncio.CancelledError | None = None
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        if not fut.cancelled():
            fut.exception()  # retrieved: nobody is left to want it
        raise cancelled
    return fut.result()
