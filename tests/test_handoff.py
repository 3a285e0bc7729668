"""The outbox's hand-off queue: the most recently idle sender gets the next mail."""

from __future__ import annotations

import asyncio

from resetd.outbox.handoff import Handoff


async def test_the_getter_that_went_idle_last_gets_the_next_item() -> None:
    q: Handoff[str] = Handoff()
    got: list[tuple[str, str]] = []

    async def getter(name: str) -> None:
        got.append((name, await q.get()))

    first = asyncio.create_task(getter("first"))
    await asyncio.sleep(0)
    last = asyncio.create_task(getter("last"))
    await asyncio.sleep(0)
    q.put_nowait("a")
    await asyncio.sleep(0)
    assert got == [("last", "a")]
    q.put_nowait("b")
    await asyncio.gather(first, last)
    assert got == [("last", "a"), ("first", "b")]


async def test_items_wait_oldest_first_when_no_getter_is_idle() -> None:
    q: Handoff[int] = Handoff()
    for i in range(3):
        q.put_nowait(i)
    assert q.qsize() == 3 and not q.empty()
    assert [await q.get(), q.get_nowait(), await q.get()] == [0, 1, 2]
    assert q.empty()


async def test_an_item_handed_to_a_getter_cancelled_meanwhile_is_not_lost() -> None:
    q: Handoff[str] = Handoff()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait("mail")  # handed over; the getter has not run yet
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)
    assert getter.cancelled()
    q.put_nowait("later")
    assert [await q.get(), await q.get()] == ["mail", "later"]


async def test_a_cancelled_idle_getter_leaves_the_idle_list() -> None:
    q: Handoff[str] = Handoff()
    gone = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    q.put_nowait("mail")
    assert q.get_nowait() == "mail"


async def test_an_item_put_back_is_next_in_line() -> None:
    q: Handoff[int] = Handoff()
    for i in range(3):
        q.put_nowait(i)
    first = q.get_nowait()
    q.put_back(first)  # taken by a sender that may not open a connection yet
    assert [q.get_nowait() for _ in range(3)] == [0, 1, 2]


async def test_a_cold_getter_waits_behind_every_warm_one() -> None:
    q: Handoff[str] = Handoff()
    got: list[tuple[str, str]] = []

    async def getter(name: str, cold: bool) -> None:
        got.append((name, await q.get(cold=cold)))

    warm = asyncio.create_task(getter("warm", False))
    await asyncio.sleep(0)
    cold = asyncio.create_task(getter("cold", True))  # idle later, but no connection
    await asyncio.sleep(0)
    q.put_nowait("a")
    q.put_nowait("b")
    await asyncio.gather(warm, cold)
    assert got == [("warm", "a"), ("cold", "b")]
