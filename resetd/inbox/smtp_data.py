"""Reading an SMTP DATA section in bulk.

aiosmtpd reads DATA one line at a time: an await, a log call and a list append
per line, and a stream buffer capped at two lines, so the socket is paused and
resumed several times per message. For a 4 KB mail that was most of a bare
aiosmtpd server's CPU. Here the section is read in a few large chunks, each
ending at a ``.<CRLF>`` found by the stream's own C-level search, and the end
marker, dot-unstuffing (RFC 5321 §4.5.2), the line-length limit
(§4.5.3.1.6) and the size limit are all applied to whole chunks.

The answers are aiosmtpd's: 552 for too much data and 500 for a too long line,
both sent only after the end marker, so the connection carries on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

END_MARK = b".\r\n"
# The virtual line break before the first line: a lone "." there ends DATA
# as much as one after any other line does.
_LINE_START = b"\r\n"

# aiosmtpd's limit for a line, CRLF included (RFC 5321's 1000 plus slack).
LINE_LENGTH_LIMIT = 1001
# How much the stream may buffer before the reader has to hand over a chunk;
# also the largest command line it will read before refusing it.
STREAM_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class DataSection:
    """What arrived between ``354`` and the end marker."""

    content: bytes  # dot-unstuffed, ending in CRLF unless empty
    too_much: bool = False  # over the size limit: content was discarded
    too_long: bool = False  # a line over LINE_LENGTH_LIMIT: content was discarded


async def read_data_section(reader: asyncio.StreamReader, size_limit: int | None) -> DataSection:
    """Read up to and including the ``<CRLF>.<CRLF>`` that ends DATA.

    Never reads past the end marker: a pipelining client may already have sent
    its next command behind it.
    """
    parts: list[bytes] = []
    size = 0
    too_much = False
    tail = _LINE_START  # the last two bytes read so far (to see a marker split over chunks)
    while True:
        try:
            chunk = await reader.readuntil(END_MARK)
            ended = (tail + chunk[-5:])[-5:] == b"\r\n.\r\n"
        except asyncio.LimitOverrunError as error:
            # No end marker in a full buffer: take what cannot be part of one.
            chunk = await reader.readexactly(error.consumed)
            ended = False
        if ended:
            chunk = chunk[:-3]
        size += len(chunk)
        if size_limit and size > size_limit:
            too_much = True
            parts.clear()  # keep reading to the end, but hold nothing
        elif not too_much:
            parts.append(chunk)
        if ended:
            break
        tail = chunk[-2:]  # every chunk that does not end DATA has at least 3 bytes
    if too_much:
        return DataSection(b"", too_much=True)
    data = b"".join(parts)
    if len(data) > LINE_LENGTH_LIMIT and _has_long_line(data):
        return DataSection(b"", too_long=True)
    # A leading dot was added to every line that starts with one (transparency).
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n")
    if data[:1] == b".":
        data = data[1:]
    return DataSection(data)


def _has_long_line(data: bytes) -> bool:
    """Whether a line, CRLF included, is over LINE_LENGTH_LIMIT.

    Window by window: if the window after a line break holds no other line
    break, the line is too long; otherwise the next window starts after its
    last one. Typical mail takes a handful of ``rfind`` calls.
    """
    window = LINE_LENGTH_LIMIT - 1  # the longest allowed run without "\n", CR included
    pos, end = 0, len(data)
    while end - pos > window:
        found = data.rfind(b"\n", pos, pos + window + 1)
        if found < 0:
            return True
        pos = found + 1
    return False
