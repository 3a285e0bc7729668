"""Where a DATA section goes while it arrives: memory while small, a temporary file once large.

Holding every message in memory made six concurrent 20 MB mails take the
process from under 100 MiB to over 400 MiB, and Python's allocator kept most
of it. Here a message stays in memory up to ``SPOOL_THRESHOLD``, and only
while all DATA sections in progress together hold less than
``MEMORY_BUDGET``; past either, it goes to an anonymous temporary file (mode
0600, unlinked as it is created, so nothing is left behind whatever happens
to the process). At most ``MAX_SPOOLED`` files exist at once; a section that
needs one waits (its client is not read meanwhile) up to ``SPOOL_WAIT``
seconds and is then refused with a 451 so its client retries later.

A spooled message is read back into memory only under :attr:`Spooler.loading`
(one at a time), which the sink holds until the message is stored, and
:func:`unmap_large_frees` makes sure that memory leaves the process after.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import BinaryIO

from ..errors import SpoolBusy

SPOOL_THRESHOLD = 1024 * 1024
MEMORY_BUDGET = 32 * 1024 * 1024
MAX_SPOOLED = 8
SPOOL_WAIT = 30.0
# Spooled data waiting for the disk is written once this much has gathered.
WRITE_SIZE = 1024 * 1024
# What a held chunk costs beyond its bytes (the object, the list slot): a
# section of short lines ending in "." arrives as one tiny chunk per line.
CHUNK_OVERHEAD = 64


# glibc's mallopt() parameter, and the size from which allocations get their own
# mapping: above what a batch of small mail allocates (at 256 KiB, mapping and
# unmapping those cost a page fault per stored message), below a message.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024


def unmap_large_frees() -> None:
    """Keep glibc from holding on to freed message-sized buffers.

    glibc serves a large allocation from its own mapping, returned to the
    system when freed, but each such free raises the threshold (up to
    32 MiB), after which message-sized buffers come from the heap, which
    keeps them: after six 20 MB mails the process stayed 100 MiB larger.
    A fixed threshold turns that adjustment off. Elsewhere (another libc,
    another system) this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


class Spooler:
    """The shared limits: bytes held in memory, spool files, spooled messages loaded."""

    def __init__(
        self,
        directory: str | None = None,
        *,
        threshold: int = SPOOL_THRESHOLD,
        memory_budget: int = MEMORY_BUDGET,
        max_files: int = MAX_SPOOLED,
        wait: float = SPOOL_WAIT,
    ) -> None:
        self.directory = directory
        self.threshold = threshold
        self.memory_budget = memory_budget
        self.wait = wait
        self.held = 0  # bytes of DATA in progress held in memory, all connections together
        self._files = asyncio.Semaphore(max_files)
        # Read back and store one spooled message at a time: each costs its size
        # in memory again while it is summarised and written.
        self.loading = asyncio.Semaphore(1)

    def buffer(self) -> DataBuffer:
        return DataBuffer(self)


class Spooled:
    """A message in a temporary file; :meth:`close` frees the file and its slot."""

    def __init__(self, file: BinaryIO, size: int, release: asyncio.Semaphore) -> None:
        self.file: BinaryIO | None = file
        self.size = size
        self._release: asyncio.Semaphore | None = release

    def read(self) -> bytes:
        """The whole message (blocking: call it in a worker thread)."""
        assert self.file is not None, "read after close"
        self.file.seek(0)
        data = self.file.read()
        assert len(data) == self.size, "the spool file changed size"
        return data

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self._release is not None:
            self._release.release()
            self._release = None


class DataBuffer:
    """One DATA section being received: :meth:`write` chunks, then :meth:`finish` or
    :meth:`discard` (always one of the two, also when the connection is lost)."""

    def __init__(self, spooler: Spooler) -> None:
        self._spooler = spooler
        self._parts: list[bytes] = []  # in memory, or not yet written to the file
        self._pending = 0  # bytes in _parts
        self._held = 0  # bytes counted in spooler.held
        self._file: BinaryIO | None = None
        self._slot = False
        self.size = 0

    async def write(self, data: bytes) -> None:
        """Add ``data``; may move to a file. Raises :class:`SpoolBusy` (then discard)."""
        if not data:
            return
        spooler = self._spooler
        cost = len(data) + CHUNK_OVERHEAD
        self.size += len(data)
        self._parts.append(data)
        self._pending += cost
        if self._file is None:
            if self._pending <= spooler.threshold and spooler.held + cost <= spooler.memory_budget:
                self._held += cost
                spooler.held += cost
                return
            await self._open_file()
        if self._pending >= WRITE_SIZE:
            await self._flush()

    async def _open_file(self) -> None:
        spooler = self._spooler
        try:
            await asyncio.wait_for(spooler._files.acquire(), spooler.wait)
        except TimeoutError:
            raise SpoolBusy from None
        self._slot = True
        self._file = await asyncio.to_thread(_temporary_file, spooler.directory)
        self._release_memory()

    async def _flush(self) -> None:
        assert self._file is not None
        parts, self._parts, self._pending = self._parts, [], 0
        await asyncio.to_thread(_write_all, self._file, parts)

    async def finish(self) -> bytes | Spooled:
        """The message: bytes when it stayed in memory, else the :class:`Spooled` file."""
        if self._file is None:
            self._release_memory()
            parts, self._parts = self._parts, []
            return b"".join(parts)
        await self._flush()
        spooled = Spooled(self._file, self.size, self._spooler._files)
        self._file, self._slot = None, False  # now the Spooled's to close
        return spooled

    def discard(self) -> None:
        """Drop what was received (refused, or the connection went away)."""
        self._parts, self._pending = [], 0
        self._release_memory()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._slot:
            self._spooler._files.release()
            self._slot = False

    def _release_memory(self) -> None:
        self._spooler.held -= self._held
        self._held = 0


def _temporary_file(directory: str | None) -> BinaryIO:
    # Unbuffered, so reading it back is one read into one bytes object.
    file: BinaryIO = tempfile.TemporaryFile(prefix="resetd-spool-", dir=directory, buffering=0)
    return file


def _write_all(file: BinaryIO, parts: Sequence[bytes]) -> None:
    """Write ``parts`` in order (``writev``: no joined copy), however short each write."""
    fd = file.fileno()
    views = [memoryview(p) for p in parts]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first : first + 512])  # IOV_MAX is 1024 on Linux
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]
