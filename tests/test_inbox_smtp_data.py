"""The sink's DATA reader: end marker, dot-stuffing, limits and pipelining on a raw socket."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from functools import partial
from typing import Any

import aiosmtplib
from aiohttp.test_utils import TestClient

from resetd.inbox import keys as ikeys
from resetd.inbox.capture import SinkHandler, SinkStats
from resetd.inbox.sink import SinkSMTP
from resetd.inbox.smtp_data import LINE_LENGTH_LIMIT, STREAM_LIMIT
from tests.inbox_helpers import api_json, make_message, smtp_address

API = "/dev/inbox/api/v1"
ENVELOPE = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"


class Dialog:
    """A hand-driven SMTP client, so tests choose exactly which bytes go in each write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, client: TestClient[Any, Any]) -> Dialog:
        dialog = cls(*await asyncio.open_connection(*smtp_address(client.app)))
        assert await dialog.reply() == 220
        dialog.writer.write(b"EHLO tester\r\n")
        assert await dialog.reply() == 250
        return dialog

    async def reply(self) -> int:
        """The code of the next (possibly multi-line) reply."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, "connection closed"
            if line[3:4] != b"-":
                return int(line[:3])

    async def begin(self) -> None:
        """Send ENVELOPE and expect it accepted, up to DATA's 354."""
        await self.send(ENVELOPE)
        assert [await self.reply() for _ in range(3)] == [250, 250, 354]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        await self.send(b"QUIT\r\n")
        assert await self.reply() == 221
        self.writer.close()
        await self.writer.wait_closed()


def stuffed(content: bytes) -> bytes:
    """``content`` as a client sends it after 354: dot-stuffed, then the end marker."""
    lines = content.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b".\r\n"


ODD_LINES = (
    b".a first line that starts with a dot\r\n"
    b"Subject: dots\r\n\r\n"
    b".\r\n"
    b"..\r\n"
    b"...\r\n"
    b"a line that ends with a dot.\r\n"
    b"\r\n"
    b". a dot and a space\r\n"
    b"last line.\r\n"
)


async def _latest_raw(client: TestClient[Any, Any]) -> bytes:
    await client.app[ikeys.writer].flush()
    return await (await client.get(f"{API}/message/latest/raw")).read()


async def test_a_message_sent_one_byte_at_a_time_is_stored_byte_for_byte(
    client: TestClient[Any, Any],
) -> None:
    dialog = await Dialog.open(client)
    await dialog.begin()
    for byte in stuffed(ODD_LINES):
        await dialog.send(bytes([byte]))
        await asyncio.sleep(0)  # let the sink read each byte on its own
    assert await dialog.reply() == 250
    await dialog.close()
    assert await _latest_raw(client) == ODD_LINES


async def test_commands_pipelined_behind_the_end_marker_are_answered(
    client: TestClient[Any, Any],
) -> None:
    dialog = await Dialog.open(client)
    await dialog.begin()
    first = b"Subject: first\r\n\r\nbody one\r\n"
    # The end of one message and the whole next envelope in a single write.
    await dialog.send(stuffed(first) + ENVELOPE)
    assert [await dialog.reply() for _ in range(4)] == [250, 250, 250, 354]
    second = b"Subject: second\r\n\r\nbody two\r\n"
    await dialog.send(stuffed(second) + b"QUIT\r\n")
    assert [await dialog.reply() for _ in range(2)] == [250, 221]
    dialog.writer.close()
    await dialog.writer.wait_closed()
    await client.app[ikeys.writer].flush()
    listing = await api_json(client, f"{API}/messages")
    assert [m["Subject"] for m in listing["messages"]] == ["second", "first"]


async def test_an_empty_message_is_accepted_and_shown(client: TestClient[Any, Any]) -> None:
    dialog = await Dialog.open(client)
    await dialog.begin()
    await dialog.send(b".\r\n")
    assert await dialog.reply() == 250
    await dialog.close()
    assert await _latest_raw(client) == b""
    mid = (await api_json(client, f"{API}/messages"))["messages"][0]["ID"]
    assert (await client.get(f"/dev/inbox/{mid}")).status == 200


async def test_a_line_over_the_limit_gets_552_and_the_session_carries_on(
    client: TestClient[Any, Any],
) -> None:
    dialog = await Dialog.open(client)
    await dialog.begin()
    too_long = b"Subject: long\r\n\r\n" + b"x" * 999 + b"\r\n" + b"y" * LINE_LENGTH_LIMIT + b"\r\n"
    await dialog.send(stuffed(too_long))
    assert await dialog.reply() == 552
    await dialog.begin()
    # The longest line taken: LINE_LENGTH_LIMIT octets with its CRLF.
    fine = b"Subject: fine\r\n\r\n" + b"x" * (LINE_LENGTH_LIMIT - 2) + b"\r\n"
    await dialog.send(stuffed(fine))
    assert await dialog.reply() == 250
    await dialog.close()
    assert await _latest_raw(client) == fine


def _recipients_line(count: int) -> bytes:
    """One unfolded To: line naming ``count`` recipients, as swaks writes it."""
    names = ", ".join(f"Recipient {n} <recipient{n}@example.com>" for n in range(count))
    return f"To: {names}".encode()


async def test_a_200_recipient_to_line_is_stored_as_received(
    client: TestClient[Any, Any],
) -> None:
    to_line = _recipients_line(200)
    assert len(to_line) > 3_600  # what swaks sent, on one line
    raw = b"From: a@example.com\r\n" + to_line + b"\r\nSubject: many\r\n\r\nHello\r\n"
    host, port = smtp_address(client.app)
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=10) as smtp:
        errors, reply = await smtp.sendmail("a@example.com", ["b@example.com"], raw)
    assert not errors and "captured" in reply  # sendmail raises on anything but 250
    assert await _latest_raw(client) == raw
    full = await api_json(client, f"{API}/message/latest")
    assert full["Subject"] == "many"
    assert full["To"][0]["Address"] == "recipient0@example.com"


async def test_a_20_kb_header_line_is_stored_byte_for_byte(
    client: TestClient[Any, Any],
) -> None:
    dialog = await Dialog.open(client)
    await dialog.begin()
    raw = b"Subject: wide\r\nX-Long: " + b"z" * 20_000 + b"\r\n\r\nbody\r\n"
    await dialog.send(stuffed(raw))
    assert await dialog.reply() == 250
    await dialog.close()
    assert await _latest_raw(client) == raw
    headers = await api_json(client, f"{API}/message/latest/headers")
    assert headers["X-Long"] == ["z" * 20_000]


async def test_a_message_larger_than_the_stream_buffer_arrives_whole(
    client: TestClient[Any, Any],
) -> None:
    blob = os.urandom(STREAM_LIMIT)  # base64 makes it a third larger than the buffer
    msg = make_message("big attachment")
    msg.add_attachment(blob, maintype="application", subtype="octet-stream", filename="b.bin")
    host, port = smtp_address(client.app)
    await aiosmtplib.send(msg, hostname=host, port=port, timeout=10)
    await client.app[ikeys.writer].flush()
    full = await api_json(client, f"{API}/message/latest")
    (part,) = full["Attachments"]
    body = await (await client.get(f"{API}/message/{full['ID']}/part/{part['PartID']}")).read()
    assert body == blob
    assert base64.b64encode(blob)[:76] in await _latest_raw(client)


async def test_the_idle_timeout_counts_from_the_last_command(
    client: TestClient[Any, Any],
) -> None:
    # A second listener on the app's own writer, with a short idle timeout.
    loop = asyncio.get_running_loop()
    handler = SinkHandler(client.app[ikeys.writer], SinkStats())
    factory = partial(SinkSMTP, handler, connections=set(), hostname="t", timeout=0.4, loop=loop)
    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        dialog = Dialog(reader, writer)
        assert await dialog.reply() == 220
        started = time.monotonic()
        for _ in range(3):  # each command moves the deadline on
            await asyncio.sleep(0.25)
            await dialog.send(b"NOOP\r\n")
            assert await dialog.reply() == 250
        assert time.monotonic() - started > 0.7  # longer than one timeout in all
        # Idle now: closed about 0.4 s after the last command.
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - started < 0.75 + 0.4 + 1.0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
