"""The outbox's queue between the dispatcher and the senders: warm connections first.

``asyncio.Queue`` wakes its waiting getters oldest first, so a trickle of mail
rotates through every sender and, over time, opens every connection of the
pool and keeps it open, for one mail a minute. Here the sender that went idle
most recently gets the next mail: its connection is the one that is open and
warm, a trickle keeps using one connection, and the others are opened only
when a burst has mail waiting for all of them. That matters to relays that
allow few concurrent sessions per account (some allow three).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._idle: list[asyncio.Future[T]] = []  # a stack: the last one idle is first

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        while self._idle:
            waiter = self._idle.pop()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._items.append(item)

    def put_back(self, item: T) -> None:
        """Return an item taken too early: first in line again."""
        while self._idle:
            waiter = self._idle.pop()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._items.appendleft(item)

    def get_nowait(self) -> T:
        """The oldest waiting item; IndexError when there is none."""
        return self._items.popleft()

    async def get(self, cold: bool = False) -> T:
        """The next item. A ``cold`` getter (a sender with no open connection) goes
        to the back of the idle line: any warm one gets an item before it."""
        if self._items:
            return self._items.popleft()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if cold:
            self._idle.insert(0, waiter)
        else:
            self._idle.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter in self._idle:
                self._idle.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                # Handed over just as the getter was cancelled: it goes back first.
                self._items.appendleft(waiter.result())
            raise
