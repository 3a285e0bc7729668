"""The event-loop monitor: late ticks, and the step that made them late."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from aiohttp import web

from resetd.loopmon import StepTimer, loop_monitor_ctx


async def test_the_step_timer_sees_a_blocking_callback_and_uninstalls_cleanly() -> None:
    original = asyncio.Handle._run
    timer = StepTimer()
    timer.install()
    try:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(lambda: (time.sleep(0.03), done.set_result(None)))
        await done
    finally:
        timer.uninstall()
    assert timer.longest >= 0.03
    assert timer.over_5ms == 1
    assert asyncio.Handle._run is original


async def test_the_stats_file_tells_a_stall_from_a_late_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "loop.json"
    monkeypatch.setenv("RESETD_LOOP_STATS", str(out))
    app = web.Application()
    app.cleanup_ctx.append(loop_monitor_ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await asyncio.sleep(0.05)
        with caplog.at_level(logging.WARNING, logger="resetd.loopmon"):
            time.sleep(0.15)  # a stall, on purpose
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    stats = json.loads(out.read_text())
    assert stats["ticks"] >= 5
    assert stats["max_ms"] >= 100
    assert stats["longest_step_ms"] >= 150
    assert stats["steps_over_5ms"] >= 1
    assert "event loop was blocked for" in caplog.text
