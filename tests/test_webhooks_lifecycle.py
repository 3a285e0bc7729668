"""``resetd serve`` as a real process: a webhook event queued by a password
change survives ``kill -9`` and is delivered by the next start, and ``resetd
outbox`` lists it beside the mail."""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .helpers import NEW_PASSWORD, eventually, token_in
from .processes import Server, relay_config, request_reset_over_http, run_cli
from .relays import Relay, free_port
from .test_lifecycle import add_users
from .webhook_receiver import HOOK_PATH, WEBHOOK_SECRET, Receiver, signature_ok

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
EMAIL = "susan@example.com"


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Server, Path, Relay, int]]:
    """A server (not started) mailing to a running relay, with [webhooks] url on
    a port where nothing listens yet."""
    relay = Relay()
    await relay.start()
    hook_port = free_port()
    db_path = tmp_path / "resetd.db"
    config = relay_config(
        tmp_path,
        relay.port,
        {
            # [mail] timeout at its default: only the webhook's is short here.
            "mail": {"timeout": 10.0},
            "webhooks": {
                "url": f"http://127.0.0.1:{hook_port}{HOOK_PATH}",
                "secret": WEBHOOK_SECRET,
                "timeout": 3.0,
            },
        },
    )
    await add_users(db_path, [EMAIL])
    server = Server(config, tmp_path)
    try:
        yield server, config, relay, hook_port
    finally:
        await server.kill()
        await relay.stop()


async def set_password_over_http(base_url: str, token: str, password: str) -> int:
    """Follow the link like a browser, then submit the form; returns the status."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base_url}/reset_password/{token}") as resp:
            match = CSRF_RE.search(await resp.text())
            assert match, f"no form after following the link (status {resp.status})"
        form = {"csrf_token": match.group(1), "password": password, "password2": password}
        async with http.post(
            f"{base_url}/reset_password", data=form, allow_redirects=False
        ) as resp:
            return resp.status


def webhook_rows(db_path: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, kind, status, attempts, last_error FROM outbox "
            "WHERE channel = 'webhook' ORDER BY id"
        ).fetchall()
        return [dict(r) for r in rows]


async def test_kill_9_with_an_event_queued_delivers_it_after_restart(
    setup: tuple[Server, Path, Relay, int],
) -> None:
    server, config, relay, hook_port = setup
    db_path = config.parent / "resetd.db"
    banner = await server.start()
    assert f"Webhooks          http://127.0.0.1:{hook_port}{HOOK_PATH} (password.changed)" in banner
    assert await request_reset_over_http(server.base_url, EMAIL) == 303
    [mail] = await relay.wait_for(1)
    assert await set_password_over_http(server.base_url, token_in(mail), NEW_PASSWORD) == 303

    async def refused() -> list[dict[str, Any]]:
        rows = webhook_rows(db_path)
        return rows if rows and rows[0]["attempts"] >= 1 and rows[0]["last_error"] else []

    [row] = await eventually(refused)
    assert row["status"] == "pending"

    # `resetd outbox` (another process) lists the event beside the mail.
    code, out, err = await run_cli("outbox", "--config", str(config))
    assert code == 0, err
    [line] = [line for line in out.splitlines() if "password.changed" in line]
    assert "pending" in line
    assert f"url=http://127.0.0.1:{hook_port}{HOOK_PATH}" in line
    assert "last error: Cannot connect to host" in out

    assert await server.kill() == -signal.SIGKILL

    receiver = Receiver()
    await receiver.start(hook_port)
    try:
        await server.start()
        [delivery] = await receiver.wait_for(1)
        assert signature_ok(WEBHOOK_SECRET, delivery.headers["Resetd-Signature"], delivery.body)
        event = delivery.event
        assert (event["type"], event["email"], event["user_id"]) == ("password.changed", EMAIL, 1)

        async def sent() -> list[dict[str, Any]]:
            rows = webhook_rows(db_path)
            return rows if rows and rows[0]["status"] == "sent" else []

        await eventually(sent)
        code, out, _ = await run_cli("outbox", "--all", "--config", str(config))
        [line] = [line for line in out.splitlines() if "password.changed" in line]
        assert "sent" in line and f"url=http://127.0.0.1:{hook_port}" in line
        assert await server.terminate() == 0
        assert len(receiver.received) == 1
    finally:
        await receiver.stop()

    logs = server.logs()
    assert "result=retry" in logs and "result=sent" in logs
    assert "webhook=" in logs and "host=127.0.0.1" in logs
    assert WEBHOOK_SECRET not in logs
    assert EMAIL not in logs and event["id"] not in logs


async def test_kill_9_while_the_app_is_answering_sends_the_event_again(
    setup: tuple[Server, Path, Relay, int],
) -> None:
    """At least once: the app may have had the event when resetd died; it gets
    it again, with the same id."""
    server, config, relay, hook_port = setup
    db_path = config.parent / "resetd.db"
    receiver = Receiver(answers=[])
    stalled = receiver.stall_first()
    await receiver.start(hook_port)
    try:
        await server.start()
        assert await request_reset_over_http(server.base_url, EMAIL) == 303
        [mail] = await relay.wait_for(1)
        assert await set_password_over_http(server.base_url, token_in(mail), NEW_PASSWORD) == 303
        await receiver.wait_for(1)
        await server.kill()
        stalled.set()
        await server.start()
        first, second = await receiver.wait_for(2)
        assert first.body == second.body
        assert signature_ok(WEBHOOK_SECRET, second.headers["Resetd-Signature"], second.body)

        async def sent() -> list[dict[str, Any]]:
            rows = webhook_rows(db_path)
            return rows if rows and rows[0]["status"] == "sent" else []

        await eventually(sent)
    finally:
        await receiver.stop()
