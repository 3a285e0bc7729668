"""A small SMTP server on a raw loopback socket, for relay behaviour that aiosmtpd
cannot be made to show: Postfix keeping a transaction open after refusing its
end of data, DATA answered 354 whatever the envelope, a 421 to every
connection or beyond a number of sessions, an end-of-data reply that comes late.

Its transaction rules are Postfix's: a MAIL inside an open transaction gets
``503 5.5.1 Error: nested MAIL command``, RCPT adds a recipient to whatever
transaction is open, DATA opens when there is a sender and a recipient, RSET
ends the transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

OK = "250 2.0.0 Ok: queued"


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class RawRelay:
    """``end_of_data(n)`` is the reply to the n-th end of data (a 250 delivers);
    ``keeps_refused_transaction``: after any other reply the transaction stays
    open, as Postfix leaves it after ``smtpd_end_of_data_restrictions``;
    ``late`` seconds pass before that reply (the mail is delivered at once when
    the reply is a 250: content scanning after queueing); ``slow_mail`` seconds
    pass before the reply to MAIL; ``mail_reply(address)`` may refuse a MAIL;
    ``data_whatever``: DATA gets 354 even with no valid envelope; ``greeting(n)``
    for the n-th connection (not a 220: the server says it and closes);
    ``max_sessions``: more at once get ``421 4.7.0 too many connections``."""

    end_of_data: Callable[[int], str] = lambda n: OK
    keeps_refused_transaction: bool = True
    late: float = 0.0
    slow_mail: float = 0.0
    mail_reply: Callable[[str], str | None] = lambda address: None
    data_whatever: bool = False
    greeting: Callable[[int], str] = lambda n: "220 relay.test ESMTP"
    max_sessions: int | None = None
    pipelining: bool = True
    delivered: list[Delivered] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    connections: int = 0
    connected_at: list[float] = field(default_factory=list)
    open_sessions: int = 0
    max_open: int = 0
    ends_of_data: int = 0
    port: int = 0
    server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in list(self._writers):
                w.transport.abort()
            await self.server.wait_closed()
            self.server = None

    def count_for(self, recipient: str) -> int:
        return sum(recipient in d.rcpt_tos for d in self.delivered)

    def attempts_within(self, seconds: float) -> int:
        """Connections in the first ``seconds`` since the first one."""
        if not self.connected_at:
            return 0
        first = self.connected_at[0]
        return sum(t - first <= seconds for t in self.connected_at)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.connected_at.append(time.monotonic())
        self._writers.add(writer)
        self.open_sessions += 1
        self.max_open = max(self.max_open, self.open_sessions)
        try:
            greeting = self.greeting(self.connections)
            if self.max_sessions is not None and self.open_sessions > self.max_sessions:
                greeting = "421 4.7.0 relay.test Error: too many connections from 127.0.0.1"
            writer.write(greeting.encode() + b"\r\n")
            if not greeting.startswith("220"):
                await writer.drain()
                return
            await self._commands(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_sessions -= 1
            self._writers.discard(writer)
            writer.close()

    async def _commands(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sender: str | None = None
        rcpts: list[str] = []

        def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        while line := await reader.readline():
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append(command)
            verb = command[:4].upper()
            if verb == "EHLO":
                extensions = ["PIPELINING"] if self.pipelining else []
                for ext in ["relay.test", *extensions, "8BITMIME"]:
                    reply(f"250-{ext}")
                reply("250 ENHANCEDSTATUSCODES")
            elif verb == "HELO":
                reply("250 relay.test")
            elif verb == "MAIL":
                address = command.partition(":")[2].strip().partition(">")[0].lstrip("<")
                refusal = self.mail_reply(address)
                if self.slow_mail:
                    await asyncio.sleep(self.slow_mail)
                if sender is not None:
                    reply("503 5.5.1 Error: nested MAIL command")
                elif refusal is not None:
                    reply(refusal)
                else:
                    sender = address
                    reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if sender is None:
                    reply("503 5.5.1 Error: need MAIL command")
                else:
                    rcpts.append(command.partition(":")[2].strip().strip("<>"))
                    reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not (self.data_whatever or (sender is not None and rcpts)):
                    reply("554 5.5.1 Error: no valid recipients")
                    continue
                reply("354 End data with <CR><LF>.<CR><LF>")
                await writer.drain()
                data = await self._content(reader)
                self.ends_of_data += 1
                answer = self.end_of_data(self.ends_of_data)
                if answer.startswith("250"):
                    self.delivered.append(Delivered(sender or "", list(rcpts), data))
                if self.late:
                    await asyncio.sleep(self.late)
                reply(answer)
                if answer.startswith("250") or not self.keeps_refused_transaction:
                    sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                reply("221 2.0.0 Bye")
                await writer.drain()
                return
            else:
                reply("502 5.5.2 Error: command not recognized")
            await writer.drain()

    @staticmethod
    async def _content(reader: asyncio.StreamReader) -> bytes:
        lines = []
        while (line := await reader.readline()) != b".\r\n":
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            lines.append(line[1:] if line.startswith(b".") else line)
        return b"".join(lines)
