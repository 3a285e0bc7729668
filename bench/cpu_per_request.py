"""``python -m bench.cpu_per_request [N]`` — figure 1's load, counted in CPU.

Starts resetd as figure 1 does (200 known users, a counting sink as relay),
warms it with 500 requests, then sends N (default 8,000) reset-request POSTs
over 64 connections, 1 in 10 for a known address, and prints the CPU the
serve process spent per request: its event-loop thread and its other
threads (SQLite writer, aiosqlite, hashing), from ``/proc/<pid>/task``.

On a shared machine the req/s of figure 1 and of its bare baseline move with
whatever else runs; the CPU one request costs moves far less, so this is the
number to alternate between two trees (run it from each tree's root with
``PYTHONPATH=.``). Binds 127.0.0.1 only; every process is stopped on exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import aiohttp

from resetd.config import PasswordConfig
from resetd.passwords import Hasher

from .load import session_for
from .procs import (
    ROOT,
    TICKS,
    free_port,
    init_db,
    process,
    resetd_cmd,
    seed_users,
    write_config,
)

KNOWN = 200
CONNECTIONS = 64


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


async def send(base: str, count: int) -> float:
    """POST ``count`` reset requests over CONNECTIONS connections; returns seconds."""
    cookie, csrf = await session_for(base)
    sent = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < count:
            sent += 1
            n = sent
            email = f"user{n % KNOWN}@example.com" if n % 10 == 0 else f"nobody{n}@example.com"
            async with session.post(
                f"{base}/reset_password_request",
                data={"csrf_token": csrf, "email": email},
                headers={"Cookie": cookie},
                allow_redirects=False,
            ) as resp:
                await resp.read()
                if resp.status != 303:
                    raise RuntimeError(f"answered {resp.status}")

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as s:
        started = time.perf_counter()
        await asyncio.gather(*(worker(s) for _ in range(CONNECTIONS)))
        return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with tempfile.TemporaryDirectory(prefix="resetd-cpu-") as tmp:
        d = Path(tmp)
        http_port, sink_smtp, sink_http = free_port(), free_port(), free_port()
        cfg = write_config(d, http_port, sink_smtp, inbox=False)
        init_db(cfg, d)
        seed_users(d / "resetd.db", KNOWN, Hasher(PasswordConfig()).hash_sync("bench password 123"))
        with (
            process(
                [sys.executable, "-m", "bench.sink", str(sink_smtp), str(sink_http)],
                sink_http,
                cwd=ROOT,
            ),
            process(resetd_cmd(cfg), http_port, env={"RESETD_LOG_LEVEL": "WARNING"}, cwd=d) as proc,
        ):
            base = f"http://127.0.0.1:{http_port}"
            asyncio.run(send(base, 500))  # warm: connections, caches, first mails
            time.sleep(1)
            before = thread_cpu(proc.pid)
            seconds = asyncio.run(send(base, count))
            after = thread_cpu(proc.pid)
    per: dict[str, float] = defaultdict(float)
    for tid, cpu in after.items():
        per["loop" if tid == proc.pid else "other"] += cpu - before.get(tid, 0.0)
    us = {k: round(v / count * 1e6) for k, v in per.items()}
    print(
        json.dumps(
            {
                "requests": count,
                "req_s": round(count / seconds),
                "cpu_us_per_request": {"loop_thread": us["loop"], "other_threads": us["other"]},
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
