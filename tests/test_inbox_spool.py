"""Large DATA goes to a private temporary file, never whole in memory, and nothing is left.

The reader's chunk boundaries are the stream's, so the dot-unstuffing and the
line limit are checked here at every boundary a real ``StreamReader`` makes;
the spool file, its mode, its removal and the bounds on how many exist and
are loaded at once are checked over real SMTP connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from resetd.db import Database
from resetd.inbox import keys as ikeys
from resetd.inbox.capture import SinkHandler, SinkStats
from resetd.inbox.events import InboxEvents
from resetd.inbox.ingest import Incoming
from resetd.inbox.parser import ParserProcess
from resetd.inbox.schema import INBOX_MIGRATIONS
from resetd.inbox.sink import SinkSMTP
from resetd.inbox.smtp_data import LINE_LENGTH_LIMIT, read_data_section
from resetd.inbox.spool import Spooled, Spooler
from resetd.inbox.store import InboxStore
from resetd.inbox.writer import InboxWriter
from tests.helpers import eventually
from tests.inbox_helpers import api_json
from tests.test_inbox_smtp_data import ODD_LINES, Dialog, stuffed

API = "/dev/inbox/api/v1"
LARGE = 2 * 1024 * 1024  # past the 1 MiB spool threshold

# Lines that start with dots, end with dots, a line of RFC 5321's 1 000
# characters, CRs that are not line ends.
TRICKY = ODD_LINES + b"." + b"x" * 997 + b"\r\n" + b"a\rb\r\r\n..\r.\r\n" + ODD_LINES


async def _read(data: bytes, piece: int, limit: int, spooler: Spooler) -> tuple[bytes, Any]:
    """``data`` through read_data_section, arriving ``piece`` bytes at a time."""
    reader = asyncio.StreamReader(limit=limit)

    async def feed() -> None:
        for start in range(0, len(data), piece):
            reader.feed_data(data[start : start + piece])
            await asyncio.sleep(0)  # let the reader take what is there
        reader.feed_eof()

    feeding = asyncio.create_task(feed())
    section = await read_data_section(reader, None, spooler)
    await feeding
    content = section.content
    if isinstance(content, Spooled):
        with contextlib.closing(content):
            content = content.read()
    return content, section


@pytest.mark.parametrize("spool_at", [10**9, 64], ids=["in memory", "spooled"])
async def test_content_is_unstuffed_whatever_the_chunk_boundaries(spool_at: int) -> None:
    spooler = Spooler(threshold=spool_at)
    for piece in (1, 2, 3, 5, 7, 64, 1000, 4096):
        for limit in (4, 5, 6, 9, 17, 1000):
            content, section = await _read(stuffed(TRICKY), piece, limit, spooler)
            assert content == TRICKY, (piece, limit)
            assert not section.too_long
    assert spooler.held == 0


async def test_a_line_too_long_is_found_whatever_the_chunk_boundaries() -> None:
    too_long = (
        b"Subject: long\r\n\r\n" + b"x" * 500 + b"\r\n" + b"y" * LINE_LENGTH_LIMIT + b"\r\nok\r\n"
    )
    for piece in (64, 1000, 4096, 70_000):
        for limit in (4, 9, 17, 1000):
            content, section = await _read(stuffed(too_long), piece, limit, Spooler(threshold=64))
            assert section.too_long and content == b"", (piece, limit)


def _spool_fds(directory: Path) -> list[int]:
    """This process's open descriptors on unlinked files in ``directory``."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(f"{directory}/") and target.endswith("(deleted)"):
            found.append(int(name))
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc")
async def test_large_data_is_spooled_to_a_private_file_removed_after(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    body = b"Subject: large\r\n\r\n" + (b"z" * 78 + b"\r\n") * (LARGE // 80)
    dialog = await Dialog.open(client)
    await dialog.begin()
    await dialog.send(stuffed(body)[:-3])  # everything but the end marker
    (fd,) = await eventually(lambda: _async(_spool_fds(tmp_path)))
    # Beside the inbox database, readable by this user only, already unlinked.
    assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    await dialog.send(b".\r\n")
    assert await dialog.reply() == 250
    # A large message's 250 waits until it is stored.
    listing = await api_json(client, f"{API}/messages")
    assert [m["Subject"] for m in listing["messages"]] == ["large"]
    assert await (await client.get(f"{API}/message/latest/raw")).read() == body
    assert _spool_fds(tmp_path) == []
    await dialog.close()


async def _async(value: Any) -> Any:
    return value


@pytest.fixture
async def small_sink(client: TestClient[Any, Any], tmp_path: Path) -> AsyncIterator[Any]:
    """A second listener on the app's writer whose spooler has one file and waits 0.3 s."""
    loop = asyncio.get_running_loop()
    spooler = Spooler(str(tmp_path), max_files=1, wait=0.3)
    handler = SinkHandler(client.app[ikeys.writer], SinkStats(), spooler=spooler)
    factory = partial(SinkSMTP, handler, connections=set(), hostname="t", loop=loop)
    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        yield server, spooler
    finally:
        server.close()
        await server.wait_closed()


async def _dialog(server: asyncio.Server) -> Dialog:
    dialog = Dialog(*await asyncio.open_connection(*server.sockets[0].getsockname()[:2]))
    assert await dialog.reply() == 220
    await dialog.send(b"EHLO tester\r\n")
    assert await dialog.reply() == 250
    return dialog


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc")
async def test_with_no_spool_file_free_large_data_gets_451_and_the_session_carries_on(
    small_sink: Any, tmp_path: Path
) -> None:
    server, _ = small_sink
    large = stuffed(b"Subject: large\r\n\r\n" + (b"q" * 78 + b"\r\n") * (LARGE // 80))
    first = await _dialog(server)
    await first.begin()
    await first.send(large[:-3])
    await eventually(lambda: _async(_spool_fds(tmp_path)))  # the one spool file is taken
    second = await _dialog(server)
    await second.begin()
    await second.send(large)
    assert await second.reply() == 451
    await second.begin()
    await second.send(stuffed(b"Subject: small\r\n\r\nfine\r\n"))
    assert await second.reply() == 250
    await first.send(b".\r\n")
    assert await first.reply() == 250
    for dialog in (first, second):
        await dialog.close()
    assert _spool_fds(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc")
async def test_a_connection_lost_during_data_removes_its_spool_file(
    small_sink: Any, tmp_path: Path
) -> None:
    server, _ = small_sink
    large = stuffed(b"Subject: large\r\n\r\n" + (b"q" * 78 + b"\r\n") * (LARGE // 80))
    gone = await _dialog(server)
    await gone.begin()
    await gone.send(large[:-3])
    await eventually(lambda: _async(_spool_fds(tmp_path)))
    gone.writer.close()
    await eventually(lambda: _async(not _spool_fds(tmp_path)))
    # Its one spool file is free again.
    dialog = await _dialog(server)
    await dialog.begin()
    await dialog.send(large)
    assert await dialog.reply() == 250
    await dialog.close()


async def test_a_spooled_message_waits_its_turn_to_load_then_gets_451(
    small_sink: Any,
) -> None:
    server, spooler = small_sink
    large = stuffed(b"Subject: large\r\n\r\n" + (b"q" * 78 + b"\r\n") * (LARGE // 80))
    dialog = await _dialog(server)
    async with spooler.loading:  # another large message being stored
        await dialog.begin()
        await dialog.send(large)
        assert await dialog.reply() == 451
    await dialog.begin()
    await dialog.send(large)
    assert await dialog.reply() == 250
    await dialog.close()


async def test_the_writer_queue_holds_a_bounded_number_of_bytes(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "inbox.db"), migrations=INBOX_MIGRATIONS)
    store = InboxStore(db, 100)
    writer = InboxWriter(store, InboxEvents(), ParserProcess(10.0), queue_bytes=10_000)
    mail = b"Subject: six kilobytes\r\n\r\n" + b"x" * 6000 + b"\r\n"

    def incoming() -> Incoming:
        return Incoming(0.0, "a@example.com", ["b@example.com"], mail)

    try:
        first = asyncio.create_task(writer.submit(incoming()))  # not started: not written
        await asyncio.sleep(0.1)
        second = asyncio.create_task(writer.submit(incoming()))
        await asyncio.sleep(0.2)
        assert not first.done() and not second.done()
        assert writer._queued_bytes == len(mail)  # 12 000 bytes would be over the bound
        await writer.start()
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        await writer.flush()
        assert await store.counts() == (2, 2)
    finally:
        await writer.stop()
        await store.close()


async def test_a_large_message_that_cannot_be_stored_gets_451_not_250(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    # The inbox database refuses raw sources, as a full disk would.
    with contextlib.closing(sqlite3.connect(tmp_path / "inbox.db")) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON message_raw "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        conn.commit()
    large = stuffed(b"Subject: large\r\n\r\n" + (b"q" * 78 + b"\r\n") * (LARGE // 80))
    dialog = await Dialog.open(client)
    await dialog.begin()
    await dialog.send(large)
    assert await dialog.reply() == 451
    with contextlib.closing(sqlite3.connect(tmp_path / "inbox.db")) as conn:
        conn.execute("DROP TRIGGER refuse")
        conn.commit()
    await dialog.begin()  # the client tries again
    await dialog.send(large)
    assert await dialog.reply() == 250
    await dialog.close()
    listing = await api_json(client, f"{API}/messages")
    assert [m["Subject"] for m in listing["messages"]] == ["large"]
