"""Real users win the hashing threads: while many clients guess passwords, a
sign-in from a client in good standing is checked next, never refused, and a
new password from a mailed link waits as a client in good standing too. The
real app over HTTP, real argon2 costs, each guessing client an address of its
own behind a trusted proxy."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from resetd import keys
from resetd.app import create_app
from resetd.hash_queue import HashingBusy, HashQueue, Standing
from resetd.passwords import hashing_threads
from resetd.reset.confirm import BUSY_MESSAGE

from .helpers import (
    CSRF_RE,
    GOOD_PASSWORD,
    NEW_PASSWORD,
    ConfigFactory,
    add_user,
    set_new_password,
    sign_in,
)
from .relays import Relay
from .signin_helpers import login_csrf, post_login
from .sqlite_rows import app_db
from .test_tokens import mailed_token

BEHIND_PROXY = {"trusted_proxies": ["127.0.0.1"]}
REAL_COSTS = {"argon2_memory_cost": 19456, "argon2_time_cost": 2}
REAL_USER = "198.51.100.7"
MISTYPED = "198.51.100.8"


async def until(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def sign_in_afresh(base: str, ip: str) -> int:
    """A browser of its own signs in as susan from ``ip``; returns the status."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{base}/login") as resp:
            match = CSRF_RE.search(await resp.text())
        assert match
        data = {"csrf_token": match.group(1), "username": "susan", "password": GOOD_PASSWORD}
        async with http.post(
            f"{base}/login", data=data, headers={"X-Forwarded-For": ip}, allow_redirects=False
        ) as resp:
            return resp.status


async def test_real_users_sign_in_next_while_forty_guessing_clients_fill_the_queue(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    cfg = make_config(dev_inbox={"enabled": False}, server=BEHIND_PROXY, passwords=REAL_COSTS)
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    csrf = await login_csrf(client)
    queue: HashQueue = client.app[keys.hash_queue]
    # As each real user's hash starts: who, how many hashes started while it
    # waited, and how many were still waiting behind it.
    real: list[tuple[Standing, int, int]] = []

    def observe(who: Standing, ahead: int) -> None:
        if who.client in (REAL_USER, MISTYPED):
            real.append((who, ahead, queue.waiting))

    # Each guessing client has two failed sign-ins on record, one real user a
    # mistyped password.
    guessers = [f"203.0.113.{n}" for n in range(1, 41)]
    for round_ in range(2):
        for batch in range(0, 40, 8):
            answers = await asyncio.gather(
                *(post_login(client, csrf, f"{round_}-{ip}", ip=ip) for ip in guessers[batch:][:8])
            )
            assert [r.status for r in answers] == [400] * 8
    assert (await post_login(client, csrf, "susan", ip=MISTYPED)).status == 400
    queue.observer = observe

    stop = asyncio.Event()
    got: Counter[int] = Counter()

    async def guess(ip: str) -> None:
        deadline = time.monotonic() + 30
        n = 0
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            got[(await post_login(client, csrf, f"guess-{ip}-{n}", ip=ip)).status] += 1

    async def real_users() -> list[int]:
        await until(lambda: queue.waiting >= 10)  # the flood fills the queue
        base = str(client.make_url(""))
        answers = []
        for _ in range(4):
            for ip in (REAL_USER, MISTYPED):
                answers.append(await sign_in_afresh(base, ip))
                await asyncio.sleep(0.05)
        stop.set()
        return answers

    flood = [asyncio.create_task(guess(ip)) for ip in guessers]
    try:
        answers = await asyncio.wait_for(real_users(), timeout=60)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*flood), timeout=60)

    assert answers == [303] * 8
    assert [who.failures for who, _, _ in real] == [0, 1] * 4
    # No hash started between a real user's arrival and its own: it was next,
    # ahead of guessers that were waiting.
    assert [ahead for _, ahead, _ in real] == [0] * 8, real
    assert max(behind for _, _, behind in real) >= 5, real
    # The guessers got answers at once when the queue had no place for them.
    assert set(got) <= {400, 429, 503}, got
    assert got[503] > 0, got
    assert (queue.running, queue.waiting) == (0, 0)


async def test_a_sign_in_refused_a_place_in_the_queue_counts_as_no_failure(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    cfg = make_config(
        dev_inbox={"enabled": False},
        server=BEHIND_PROXY,
        limits={"logins_in_progress": 2},
        passwords=REAL_COSTS,
    )
    client = await aiohttp_client(create_app(cfg))
    csrf = await login_csrf(client)
    ips = [f"203.0.113.{n}" for n in range(1, 31)]
    answers = await asyncio.wait_for(
        asyncio.gather(*(post_login(client, csrf, f"guess{ip}", ip=ip) for ip in ips)), 60
    )
    statuses = {ip: r.status for ip, r in zip(ips, answers, strict=True)}
    assert set(statuses.values()) == {400, 503}, statuses
    assert all(r.headers["Retry-After"] == "1" for r in answers if r.status == 503)

    with sqlite3.connect(cfg.database.path) as conn:
        hits = dict(conn.execute("SELECT bucket, hits FROM rate_counters").fetchall())
    conn.close()
    for ip, status in statuses.items():
        counted = 1 if status == 400 else 0
        assert hits.get(f"login:ip:{ip}", 0) == counted, (ip, status)
        assert hits.get(f"login:account:guess{ip}", 0) == counted, (ip, status)


async def test_a_guesser_at_a_full_queue_is_refused_before_any_database_work(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    threads = hashing_threads()
    cfg = make_config(
        dev_inbox={"enabled": False},
        server=BEHIND_PROXY,
        limits={"logins_in_progress": threads + 1},  # every thread busy, and one waiting
    )
    client = await aiohttp_client(create_app(cfg))
    csrf = await login_csrf(client)
    queue: HashQueue = client.app[keys.hash_queue]
    assert (await post_login(client, csrf, "guess1", ip="203.0.113.9")).status == 400

    release = threading.Event()
    holders = [
        asyncio.create_task(queue.run(Standing(f"holder{n}"), release.wait, 10))
        for n in range(threads)
    ]
    # The database's writer is stuck: a sign-in that needed it would hang.
    writer = asyncio.create_task(app_db(client.app).writer.run(lambda conn: release.wait(10)))
    try:
        await until(lambda: queue.running == threads)
        waiter = asyncio.create_task(queue.run(Standing("198.51.100.1"), time.sleep, 0))
        await until(lambda: queue.waiting == 1)
        resp = await asyncio.wait_for(
            post_login(client, csrf, "guess2", ip="203.0.113.9"), timeout=5
        )
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
    finally:
        release.set()
    await asyncio.gather(*holders, writer, waiter)


async def test_a_new_password_waits_in_good_standing_and_is_told_when_there_is_no_place(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay
) -> None:
    threads = hashing_threads()
    cfg = make_config(
        dev_inbox={"enabled": False},
        mail={"port": relay.port},
        limits={"logins_in_progress": threads + 1},  # every thread busy, and one waiting
    )
    client = await aiohttp_client(create_app(cfg))
    await add_user(client.app)
    queue: HashQueue = client.app[keys.hash_queue]
    started: list[Standing] = []
    queue.observer = lambda who, ahead: started.append(who)
    release = threading.Event()

    async def hold_threads() -> list[asyncio.Task[Any]]:
        release.clear()
        holders = [
            asyncio.create_task(queue.run(Standing(f"holder{n}"), release.wait, 10))
            for n in range(threads)
        ]
        await until(lambda: queue.running == threads)
        return holders

    # A guessing client waits for the last place; the new password takes it.
    token = await mailed_token(client, relay)
    holders = await hold_threads()
    try:
        guesser = asyncio.create_task(queue.run(Standing("203.0.113.9", 6), time.sleep, 0))
        await until(lambda: queue.waiting == 1)
        reset = asyncio.create_task(set_new_password(client, token))
        with pytest.raises(HashingBusy):
            await asyncio.wait_for(guesser, 20)
        assert queue.waiting == 1
    finally:
        release.set()
    assert (await asyncio.wait_for(reset, 20)).status == 303
    await asyncio.gather(*holders)
    assert started[-1] == Standing("127.0.0.1", 0)
    assert (await sign_in(client, "susan", NEW_PASSWORD)).status == 303

    # The last place taken by a client in good standing: the form says so, with
    # 503 and Retry-After, and the link still works once there is room.
    token = await mailed_token(client, relay)
    holders = await hold_threads()
    try:
        waiter = asyncio.create_task(queue.run(Standing("198.51.100.1"), time.sleep, 0))
        await until(lambda: queue.waiting == 1)
        resp = await set_new_password(client, token, GOOD_PASSWORD)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        page = await resp.text()
        assert BUSY_MESSAGE in page and 'name="password2"' in page
    finally:
        release.set()
    await asyncio.gather(*holders, waiter)
    assert (await set_new_password(client, token, GOOD_PASSWORD)).status == 303
    assert (await sign_in(client, "susan", GOOD_PASSWORD)).status == 303
