"""Event-loop health: a ticker that notices when something blocks the loop.

Every ``interval`` seconds a sleeping task wakes up and measures how late it
is. A delay over 100 ms is logged as a warning (something ran on the loop that
should have gone to a thread). With ``RESETD_LOOP_STATS=/path.json`` the ticker
runs every 10 ms and writes max/p99/p50 delay to that file on shutdown — the
benchmarks read it.

A late tick has two causes: one step that holds the loop (a stall: blocking
I/O, a long computation, a full garbage collection), or many short steps ready
before the ticker's (queueing: the loop is simply busy). With stats on, every
step the loop runs is also timed, and the file gets the longest one, which
tells the two apart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from .private_files import write_private

log = logging.getLogger(__name__)

WARN_AFTER = 0.1


class StepTimer:
    """Times every callback the event loop runs (only when stats are asked for:
    it wraps asyncio's ``Handle._run``, a few hundred nanoseconds per step)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.over_5ms = 0
        self._original: Callable[[asyncio.Handle], None] | None = None

    def install(self) -> None:
        original = self._original = asyncio.Handle._run
        timer = self

        def timed(handle: asyncio.Handle) -> None:
            started = time.perf_counter()
            original(handle)
            took = time.perf_counter() - started
            if took > 0.005:
                timer.over_5ms += 1
            if took > timer.longest:
                timer.longest = took

        asyncio.Handle._run = timed  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        if self._original is not None:
            asyncio.Handle._run = self._original  # type: ignore[method-assign,assignment]
            self._original = None


class LoopMonitor:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.delays: list[float] = []
        self.keep = False

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            delay = time.perf_counter() - started - self.interval
            if self.keep:
                self.delays.append(delay)
            if delay > WARN_AFTER:
                log.warning("event loop was blocked for %.0f ms", delay * 1000)

    def stats(self) -> dict[str, float]:
        d = sorted(self.delays)
        if not d:
            return {"ticks": 0, "max_ms": 0.0, "p99_ms": 0.0, "p50_ms": 0.0}
        return {
            "ticks": len(d),
            "max_ms": d[-1] * 1000,
            "p99_ms": d[min(len(d) - 1, int(len(d) * 0.99))] * 1000,
            "p50_ms": d[len(d) // 2] * 1000,
        }


async def loop_monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    out = os.environ.get("RESETD_LOOP_STATS")
    monitor = LoopMonitor(0.01 if out else 0.25)
    monitor.keep = bool(out)
    steps = StepTimer()
    if out:
        steps.install()
    task = asyncio.create_task(monitor.run(), name="loop-monitor")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    steps.uninstall()
    if out:
        stats = {
            **monitor.stats(),
            "longest_step_ms": steps.longest * 1000,
            "steps_over_5ms": steps.over_5ms,
        }
        await asyncio.to_thread(write_private, Path(out), json.dumps(stats).encode())
