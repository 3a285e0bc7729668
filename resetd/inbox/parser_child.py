"""The parser process's side: read a job from stdin, answer on stdout, repeat.

Started by :class:`resetd.inbox.parser.ParserProcess`, which loads only the
parsing modules here (not the package's web side). A frame is a 4-byte
big-endian length and a pickle; the parent is the only writer, and the
answers are plain values this module builds. Any exception a mail provokes,
memory exhaustion included, becomes an ``("error", text)`` answer: this
process exists to contain them, so it catches them all. It ends when stdin
closes (the parent stopped or died).
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from .digest import describe, full_digest
from .message_view import find_part

HEADER = struct.Struct("!I")
# Address space for the process: enough for the stdlib's reading of a 25 MB
# mail many times over; a mail that needs more is stored unparsed.
MEMORY_LIMIT = 2 * 1024**3

JOBS: dict[str, Callable[..., Any]] = {"digest": full_digest, "part": find_part}


def read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def main() -> None:
    # Ctrl+C reaches the whole process group: stopping is the parent's to decide.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(5)  # the server's event loop comes first when the cores are busy
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ValueError, OSError):
        pass  # a lower hard limit is already in place
    stdin = sys.stdin.buffer
    # Answers go to a private copy of stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    while (frame := read_frame(stdin)) is not None:
        kind, args = pickle.loads(frame)  # noqa: S301 (written by the parent process only)
        try:
            answer: tuple[str, Any] = ("ok", JOBS[kind](*args))
        except Exception as exc:  # a mail must not end this process; see the docstring
            answer = ("error", describe(exc))
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(HEADER.pack(len(data)))
        out.write(data)
        out.flush()
