"""A lean SMTP load generator for figure 3: what ``wrk`` is to figure 1.

aiosmtplib, the client most asyncio apps send with, spends about 0.22 ms of
CPU per 4 KB message (its reply parsing, its dot-stuffing, its timeouts).
On this project's two cores that client takes most of the second core, so a
figure 3 driven by it measures how the client and the server share the
machine rather than how fast the server takes mail: a server that answers
every sender at once (the bare sink) keeps the client's core busy, one whose
senders each wait for their batch's commit leaves it idle in turns.

This client speaks the same dialogue aiosmtplib does, one command and one
reply at a time (EHLO once per connection, then MAIL FROM, RCPT TO, DATA and
the data, no PIPELINING), checks every reply, and costs about 0.05 ms per
message, because the messages are dot-stuffed and CRLF-terminated before the
clock starts. Both servers of a comparison get the same client.
"""

from __future__ import annotations

import asyncio
import time

# The reply each step of a transaction must get; anything else stops the run.
_EXPECTED = (b"250", b"250", b"354", b"250")


class SMTPLoadError(Exception):
    """A server answered a step with something other than the reply it needs."""


def prepare(raw: bytes) -> bytes:
    """``raw`` as the DATA section of RFC 5321 §4.5.2: CRLF lines, leading dots
    doubled, and the final ``.`` line."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"\r\n".join(stuffed) + b"\r\n.\r\n"


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One whole reply (its last line: ``250 OK``, after any ``250-…`` lines)."""
    while True:
        line = await reader.readline()
        if not line:
            raise SMTPLoadError("the server closed the connection")
        if line[3:4] != b"-":
            return line


async def send_all(
    port: int,
    bodies: list[bytes],
    connections: int,
    sender: str = "no-reply@localhost",
) -> float:
    """Send every message of ``bodies`` (already :func:`prepare`-d) to
    ``user{i}@example.com`` over ``connections`` reused connections to
    127.0.0.1:``port``; returns the seconds from the first connection to the
    last reply."""
    pending = list(range(len(bodies) - 1, -1, -1))  # popped from the end: in order
    mail_from = f"MAIL FROM:<{sender}>\r\n".encode()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await _reply(reader)  # the greeting
            writer.write(b"EHLO bench.localhost\r\n")
            await _reply(reader)
            while pending:
                i = pending.pop()
                steps = (mail_from, b"RCPT TO:<user%d@example.com>\r\n" % i, b"DATA\r\n", bodies[i])
                for step, expected in zip(steps, _EXPECTED, strict=True):
                    writer.write(step)
                    answer = await _reply(reader)
                    if not answer.startswith(expected):
                        raise SMTPLoadError(f"message {i}: {answer.decode(errors='replace')!r}")
            writer.write(b"QUIT\r\n")
            await _reply(reader)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started
