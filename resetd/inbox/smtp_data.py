"""Reading an SMTP DATA section in bulk.

aiosmtpd reads DATA one line at a time: an await, a log call and a list append
per line, and a stream buffer capped at two lines, so the socket is paused and
resumed several times per message. For a 4 KB mail that was most of a bare
aiosmtpd server's CPU. Here the section is read in a few large chunks, each
ending at a ``.<CRLF>`` found by the stream's own C-level search, and the end
marker, dot-unstuffing (RFC 5321 §4.5.2), the line-length limit and the
size limit are all applied to whole chunks, and each chunk goes on to memory
or a spool file (spool.py) as it arrives.

Lines may be far longer than RFC 5321's 1000 octets (§4.5.3.1.6): real
senders put hundreds of recipients on one ``To:`` line (swaks, mail merges),
and Mailpit stores them. A dev inbox that refuses them loses the mail it
exists to show, so a line may have up to LINE_LENGTH_LIMIT octets and is
stored as received.

The answers are sent only after the end marker, so the connection carries on:
552 for too much data or a line over the limit; a section that found no spool
file free in time gets a 451 the same way.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from ..errors import SpoolBusy
from .spool import Spooled, Spooler

END_MARK = b".\r\n"
# The virtual line break before the first line: a lone "." there ends DATA
# as much as one after any other line does.
_LINE_START = b"\r\n"
# A stuffed dot. The regex's search for it runs at about twice the speed of
# ``bytes.replace`` (and of ``in``, which scanned a chunk without one twice),
# and far faster on lines of dots: "." in the pattern makes the stdlib's
# substring search step one byte at a time through them.
_STUFFED = re.compile(rb"\r\n\.")

# The longest line taken, CRLF included: RFC 5321's 1000 octets is what a
# relay may refuse, not what applications send. 64 KiB holds a To: of a
# couple of thousand addresses; any header scanner downstream is linear.
LINE_LENGTH_LIMIT = 64 * 1024
# How much the stream may buffer before the reader has to hand over a chunk;
# also the largest command line it will read before refusing it.
STREAM_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class DataSection:
    """What arrived between ``354`` and the end marker."""

    # Dot-unstuffed, ending in CRLF unless empty: bytes, or a temporary file
    # for a large message (the caller closes it). Empty when refused.
    content: bytes | Spooled
    too_much: bool = False  # over the size limit: content was discarded
    too_long: bool = False  # a line over LINE_LENGTH_LIMIT: content was discarded
    busy: bool = False  # no spool file was free in time: content was discarded


async def read_data_section(
    reader: asyncio.StreamReader, size_limit: int | None, spooler: Spooler | None = None
) -> DataSection:
    """Read up to and including the ``<CRLF>.<CRLF>`` that ends DATA.

    Never reads past the end marker: a pipelining client may already have sent
    its next command behind it. Each chunk is checked, unstuffed and handed to
    a :class:`~resetd.inbox.spool.DataBuffer` as it arrives, so a large message
    is never whole in memory here. A refused section is still read to its end,
    holding nothing, so the session carries on.
    """
    buffer = (spooler or Spooler()).buffer()
    unstuff = _Unstuffer()
    size = 0
    open_line = 0  # length of the line still open at the end of the chunks so far
    too_much = too_long = busy = False
    tail = _LINE_START  # the last two bytes read so far (to see a marker split over chunks)
    try:
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
            refused = too_much or too_long or busy
            if not refused:
                line = _open_line_after(chunk, open_line)
                if line is None:
                    too_long = refused = True
                else:
                    open_line = line
            if refused:
                buffer.discard()  # keep reading to the end, but hold nothing
            else:
                try:
                    await buffer.write(unstuff.feed(chunk, final=ended))
                except SpoolBusy:
                    busy = True
                    buffer.discard()
            if ended:
                break
            tail = chunk[-2:]  # every chunk that does not end DATA has at least 3 bytes
        if too_much or too_long or busy:
            return DataSection(b"", too_much, too_long and not too_much, busy)
        return DataSection(await buffer.finish())
    except BaseException:
        buffer.discard()
        raise


class _Unstuffer:
    """Dot-unstuffing (RFC 5321 §4.5.2) over a stream of chunks.

    A leading dot was added to every line that starts with one; the
    ``<CRLF>.`` to undo may be split between two chunks, so a chunk's final
    CR or CRLF is held back until the next one arrives.
    """

    def __init__(self) -> None:
        self._held = b""
        self._first = True

    def feed(self, chunk: bytes, final: bool) -> bytes:
        """The unstuffed bytes of ``chunk`` that are certain; all of them when ``final``."""
        if self._first and chunk:
            self._first = False
            if chunk[:1] == b".":  # the first line starts after a virtual line break
                chunk = chunk[1:]
        data = self._held + chunk if self._held else chunk
        keep = 0 if final else 2 if data.endswith(b"\r\n") else 1 if data.endswith(b"\r") else 0
        if keep:
            self._held, data = data[-keep:], data[:-keep]
        else:
            self._held = b""
        return _STUFFED.sub(b"\r\n", data)


def _open_line_after(chunk: bytes, open_line: int) -> int | None:
    """The length of the line left open after ``chunk``, or None if a line is too long.

    A line, CRLF included, may be up to LINE_LENGTH_LIMIT: a run of at most
    ``window`` bytes without "\n", counting the ``open_line`` bytes of the
    line the previous chunk left open. Window by window: if the window holds
    no line break, the line is too long; otherwise the next window starts after
    its last one. Typical mail takes a handful of ``rfind`` calls.
    """
    window = LINE_LENGTH_LIMIT - 1  # the longest allowed run without "\n", CR included
    pos, end, run = 0, len(chunk), open_line
    while end - pos > window - run:
        found = chunk.rfind(b"\n", pos, pos + window - run + 1)
        if found < 0:
            return None
        pos, run = found + 1, 0
    last = chunk.rfind(b"\n", pos)
    return run + end - pos if last < 0 else end - last - 1
