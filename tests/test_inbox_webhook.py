"""[dev_inbox] webhook_url: each new message's summary POSTed, never slowing SMTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from resetd.app import create_app
from resetd.inbox import keys as ikeys
from resetd.inbox.webhook import QUEUE_SIZE
from tests.helpers import ConfigFactory, eventually
from tests.inbox_helpers import make_message, send_smtplib, smtp_address


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[Any]]]:
    """A real webhook receiver on loopback: its URL and what it was POSTed."""
    got: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((request.headers["Content-Type"], await request.json()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/hook")), got
    await server.close()


@pytest.fixture
async def stalling_webhook() -> AsyncIterator[str]:
    """A webhook that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/hook"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_webhook_receives_mailpits_summary_of_each_new_message(
    aiohttp_client: Any, make_config: ConfigFactory, receiver: tuple[str, list[Any]]
) -> None:
    url, got = receiver
    client = await aiohttp_client(create_app(make_config(dev_inbox={"webhook_url": url})))
    await send_smtplib(client.app, make_message("Hooked", to="Susan <susan@example.com>"))

    async def arrived() -> bool:
        return len(got) == 1

    await eventually(arrived)
    content_type, summary = got[0]
    assert content_type == "application/json"
    assert summary["Subject"] == "Hooked"
    assert summary["To"] == [{"Name": "Susan", "Address": "susan@example.com"}]
    assert {"ID", "MessageID", "Read", "From", "Created", "Size", "Snippet", "Tags"} <= set(summary)
    assert "More" not in summary  # the live list's own field, not Mailpit's


async def test_stalled_webhook_never_slows_smtp_and_overflow_is_dropped_and_logged(
    aiohttp_client: Any,
    make_config: ConfigFactory,
    stalling_webhook: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await aiohttp_client(
        create_app(make_config(dev_inbox={"webhook_url": stalling_webhook}))
    )
    app = client.app
    host, port = smtp_address(app)
    count = QUEUE_SIZE + 20
    caplog.set_level(logging.WARNING, logger="resetd.inbox.webhook")
    # Every reply within aiosmtplib's short timeout, while the webhook holds its first POST.
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=5) as smtp:
        for n in range(count):
            await smtp.send_message(make_message(f"Mail {n}"))
    await app[ikeys.writer].flush()
    total, _ = await app[ikeys.store].counts()
    assert total == count
    hook = app[ikeys.webhook]
    assert hook is not None

    async def overflowed() -> bool:
        return hook.dropped >= count - QUEUE_SIZE - 1  # one POST may be under way

    await eventually(overflowed)
    assert hook.posted == 0
    assert any("not keeping up" in r.getMessage() for r in caplog.records)
