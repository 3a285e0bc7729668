"""A client that sends slowly, or not at all, cannot hold a connection for long.

``resetd serve`` as a real process with ``[server] header_timeout`` and
``body_timeout`` of one second; raw sockets trickle a request in. The bounds
asserted are generous (the machine is shared): what matters is that the
connection ends at all, where before it was held for as long as the client liked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from resetd.config import ConfigError
from resetd.config_load import load_config

from .helpers import TEST_SECRET
from .processes import Server, write_config

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
BOUND = 10.0  # seconds within which each connection must be closed


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    config = write_config(
        tmp_path / "resetd.toml",
        {
            "server": {
                "port": 0,
                "secret_key": TEST_SECRET,
                "header_timeout": HEADER_TIMEOUT,
                "body_timeout": BODY_TIMEOUT,
            },
            "database": {"path": str(tmp_path / "resetd.db")},
            "mail": {"server": "127.0.0.1", "port": 0},
        },
    )
    s = Server(config, tmp_path)
    await s.start()
    try:
        yield s
    finally:
        await s.kill()


async def trickle_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[float, bytes]:
    """Send ``data`` a byte every 0.2 s (then nothing) until the server closes the
    connection; returns (seconds it took, everything the server sent)."""
    started = time.monotonic()
    received = b""

    async def read_all() -> None:
        nonlocal received
        while chunk := await reader.read(4096):
            received += chunk

    reading = asyncio.create_task(read_all())
    try:
        for byte in data:
            if reading.done() or time.monotonic() - started > BOUND:
                break
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.2)
        await asyncio.wait_for(reading, max(0.1, BOUND - (time.monotonic() - started)))
    except ConnectionError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {BOUND} s; got {received!r}") from None
    finally:
        reading.cancel()
        writer.close()
    return time.monotonic() - started, received


async def test_a_request_line_sent_a_byte_at_a_time_is_cut_off(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    # Far more bytes than the timeout lets through at five a second: never complete.
    partial = b"GET /login?" + b"x" * 500
    took, received = await trickle_until_closed(reader, writer, partial)
    assert took < BOUND
    assert b"200 OK" not in received


async def test_headers_sent_slowly_are_cut_off(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    partial = b"GET /login HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: " + b"y" * 500
    writer.write(partial[:30])  # the start arrives at once, the rest trickles
    took, received = await trickle_until_closed(reader, writer, partial[30:])
    assert took < BOUND
    assert b"200 OK" not in received


async def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    took, received = await trickle_until_closed(reader, writer, b"")
    assert took < BOUND
    assert received == b""


async def test_a_body_sent_slowly_gets_408_and_the_connection_closes(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"POST /reset_password_request HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
        b"csrf_token="
    )
    took, received = await trickle_until_closed(reader, writer, b"z" * 500)
    assert took < BOUND
    assert received.startswith(b"HTTP/1.1 408"), received[:200]


async def test_a_prompt_client_is_served_on_the_same_server(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status.startswith(b"HTTP/1.1 200"), status


@pytest.mark.parametrize("key", ["header_timeout", "body_timeout"])
@pytest.mark.parametrize("value", [0, -1, 86400])
def test_timeouts_outside_their_range_are_refused_naming_the_key(key: str, value: int) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={}, overrides={"server": {"secret_key": TEST_SECRET, key: value}})
    expected = f"[server] {key}: expected more than 0 and at most 3600 seconds, got {value}"
    assert str(info.value) == expected
