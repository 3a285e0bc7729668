"""The hashing queue picks who hashes next: clients in good standing before
clients with failed sign-ins, clients taking turns, the worst placed pushed out
when it is full, and a cancelled hash giving its place back only when its thread
is done. A real HashQueue with real threads; the "hash" is a function that
records its turn, and a holder keeps the one thread busy while the test lines
hashes up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from resetd.hash_queue import HashingBusy, HashQueue, Standing


class Hashes:
    """Fake hashes that run in the queue's threads and record the order they ran in."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.release = threading.Event()

    def hold(self) -> str:
        """Keep a thread until :attr:`release` is set (bounded: 10 s)."""
        self.release.wait(10)
        return "held"

    def slow(self, label: str) -> str:
        self.ran.append(label)
        time.sleep(0.005)
        return label


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def line_up(
    queue: HashQueue, hashes: Hashes, askers: list[tuple[str, int, str]]
) -> dict[str, asyncio.Task[str]]:
    """Queue one slow hash per (client, failures, label), in this order, while the
    queue's threads are held; returns each label's task once it waits or was refused."""
    tasks: dict[str, asyncio.Task[str]] = {}
    for client, failures, label in askers:
        tasks[label] = asyncio.create_task(
            queue.run(Standing(client, failures), hashes.slow, label)
        )
        await asyncio.sleep(0)  # it takes its place (or is refused) before the next comes
        await asyncio.sleep(0)
    return tasks


async def hold_threads(queue: HashQueue, hashes: Hashes) -> list[asyncio.Task[Any]]:
    holders = [
        asyncio.create_task(queue.run(Standing(f"holder{n}"), hashes.hold))
        for n in range(queue.threads)
    ]
    await until(lambda: queue.running == queue.threads)
    return holders


async def test_good_standing_goes_first_then_fewer_failures_and_clients_take_turns() -> None:
    hashes = Hashes()
    with HashQueue(threads=1, capacity=16) as queue:
        holders = await hold_threads(queue, hashes)
        tasks = await line_up(
            queue,
            hashes,
            [
                ("a", 5, "a1"),
                ("a", 5, "a2"),  # a's second: after every other client's first
                ("b", 6, "b1"),
                ("c", 1, "c1"),  # one mistyped password: before the guessers
                ("d", 0, "d1"),  # good standing, though it came late: first
                ("e", 4, "e1"),  # 4-7 failures: the same class as a and b
            ],
        )
        assert queue.waiting == 6
        hashes.release.set()
        await asyncio.wait_for(asyncio.gather(*holders, *tasks.values()), 10)
    assert hashes.ran == ["d1", "c1", "a1", "b1", "e1", "a2"]


async def test_a_client_with_many_waiting_hashes_takes_turns_with_newcomers() -> None:
    hashes = Hashes()
    with HashQueue(threads=1, capacity=16) as queue:
        holders = await hold_threads(queue, hashes)
        flood = await line_up(queue, hashes, [("a", 0, f"a{n}") for n in range(1, 5)])
        hashes.release.set()
        await until(lambda: hashes.ran == ["a1"])
        # b and c arrive while a still has three waiting: each gets its first
        # before a gets another.
        late = await line_up(queue, hashes, [("b", 0, "b1"), ("c", 0, "c1")])
        await asyncio.wait_for(asyncio.gather(*holders, *flood.values(), *late.values()), 10)
    # a2 may have started before b and c arrived; after them, a's turn comes again.
    assert hashes.ran in (
        ["a1", "b1", "c1", "a2", "a3", "a4"],
        ["a1", "a2", "b1", "c1", "a3", "a4"],
    )


async def test_a_full_queue_refuses_clients_with_failures_and_makes_room_for_good_standing() -> (
    None
):
    hashes = Hashes()
    with HashQueue(threads=1, capacity=4) as queue:  # the holder and three waiting
        holders = await hold_threads(queue, hashes)
        waiting = await line_up(queue, hashes, [("a", 3, "a1"), ("a", 3, "a2"), ("b", 8, "b1")])
        assert (queue.running, queue.waiting) == (1, 3)

        # Full: a client with failures, no better placed than the worst waiting, is
        # refused at once, and the queue is as it was.
        with pytest.raises(HashingBusy):
            await queue.run(Standing("d", 12), hashes.slow, "d1")
        assert queue.waiting == 3

        # A client with fewer failures takes the worst place: b's (most failures).
        more = await line_up(queue, hashes, [("g", 1, "g1")])
        with pytest.raises(HashingBusy):
            await waiting["b1"]
        # A client in good standing takes the newest place of the client with the
        # most failures and the most waiting: a's second, then a's first.
        more |= await line_up(queue, hashes, [("e", 0, "e1")])
        with pytest.raises(HashingBusy):
            await waiting["a2"]
        more |= await line_up(queue, hashes, [("f", 0, "f1")])
        with pytest.raises(HashingBusy):
            await waiting["a1"]
        more |= await line_up(queue, hashes, [("h", 0, "h1")])
        with pytest.raises(HashingBusy):
            await more.pop("g1")
        # Full of clients in good standing, each waiting for one hash: a newcomer
        # in good standing is refused rather than pushing one of them out.
        with pytest.raises(HashingBusy):
            await queue.run(Standing("i"), hashes.slow, "i1")
        assert queue.waiting == 3

        hashes.release.set()
        await asyncio.wait_for(asyncio.gather(*holders, *more.values()), 10)
        assert (queue.running, queue.waiting) == (0, 0)
    assert hashes.ran == ["e1", "f1", "h1"]


async def test_a_hash_cancelled_while_waiting_gives_its_place_back_and_never_runs() -> None:
    hashes = Hashes()
    with HashQueue(threads=1, capacity=2) as queue:
        holders = await hold_threads(queue, hashes)
        waiting = await line_up(queue, hashes, [("a", 3, "a1")])
        waiting["a1"].cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting["a1"]
        assert queue.waiting == 0
        # Its place is free: another client with failures gets it.
        later = await line_up(queue, hashes, [("b", 3, "b1")])
        assert queue.waiting == 1
        hashes.release.set()
        await asyncio.wait_for(asyncio.gather(*holders, *later.values()), 10)
    assert hashes.ran == ["b1"]


async def test_a_hash_cancelled_mid_way_keeps_its_thread_until_the_thread_is_done() -> None:
    hashes = Hashes()
    with HashQueue(threads=1, capacity=4) as queue:
        (holder,) = await hold_threads(queue, hashes)
        waiting = await line_up(queue, hashes, [("a", 0, "a1")])
        holder.cancel()
        await asyncio.sleep(0.05)
        # The thread still hashes for it: it has not returned, its thread is not
        # given to the next, and the pool holds no second hash behind it.
        assert not holder.done()
        assert (queue.running, queue.waiting, hashes.ran) == (1, 1, [])
        hashes.release.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(holder, 10)
        assert await asyncio.wait_for(waiting["a1"], 10) == "a1"
        assert (queue.running, queue.waiting) == (0, 0)


async def test_no_more_hashes_start_at_once_than_there_are_threads() -> None:
    hashes = Hashes()
    at_once: list[int] = []
    with HashQueue(threads=2, capacity=64) as queue:
        queue.observer = lambda who, ahead: at_once.append(queue.running)
        holders = await hold_threads(queue, hashes)
        tasks = await line_up(queue, hashes, [(f"c{n % 7}", 1 + n % 3, f"h{n}") for n in range(40)])
        # Line a good-standing newcomer up behind 40 hashes: it is next, which it
        # could not be if they were queued in the pool already.
        late = await line_up(queue, hashes, [("late", 0, "late")])
        hashes.release.set()
        await asyncio.wait_for(asyncio.gather(*holders, *tasks.values(), *late.values()), 20)
    assert max(at_once) <= 2
    assert hashes.ran.index("late") < 2
