"""The SMTP sink: aiosmtpd running inside the app's event loop.

It accepts what real applications send (SMTPUTF8, 8BITMIME, any number of
recipients, AUTH PLAIN/LOGIN with any credentials even without TLS, STARTTLS
when ``[dev_inbox] starttls`` is on) and
refuses a message over ``max_message_size`` with aiosmtpd's 552 during the
transaction, after which the connection and the server carry on. The greeting
hostname is given explicitly, so no reverse-DNS lookup (``getfqdn``) ever runs.
Accepted mail is handed to the :class:`~resetd.inbox.writer.InboxWriter`;
when it cannot store mail the answer is 451, so the client keeps the mail.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session, syntax

from ..config import DevInboxConfig
from .ingest import Incoming
from .smtp_data import STREAM_LIMIT, read_data_section
from .writer import InboxWriter, StorageUnavailable

log = logging.getLogger(__name__)

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# ``<dot-atom@host.name>``: what nearly every client sends in MAIL FROM and RCPT TO.
_PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


@dataclass
class SinkStats:
    """Counters since the process started (the API's ``info``)."""

    started: float = field(default_factory=time.time)
    accepted: int = 0
    accepted_size: int = 0
    rejected: int = 0


class SinkHandler:
    """aiosmtpd handler: every recipient is welcome; DATA goes to the writer."""

    def __init__(self, writer: InboxWriter, stats: SinkStats) -> None:
        self.writer = writer
        self.stats = stats

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        # aiosmtpd gives every transaction a new Envelope, so its list is ours to keep.
        try:
            await self.writer.submit(
                Incoming(time.time(), envelope.mail_from or "", envelope.rcpt_tos, raw)
            )
        except StorageUnavailable as exc:
            log.warning("dev inbox: answering 451: %s", exc)
            return "451 4.3.0 The dev inbox cannot store mail right now; try again later"
        stats = self.stats
        stats.accepted += 1
        stats.accepted_size += len(raw)
        return "250 2.0.0 OK: captured"


def accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """A dev inbox takes any credentials, so apps configured for a real relay just work."""
    return AuthResult(success=True)


class SinkSMTP(SMTP):
    """aiosmtpd's SMTP, counting refusals and remembering its open connections.

    DATA is read in bulk (:mod:`.smtp_data`) rather than aiosmtpd's line at a
    time. aiosmtpd sizes its stream buffer from ``line_length_limit``; only our
    DATA reader used that for lines, so here it is the buffer's size. Command
    lines are still held to aiosmtpd's ``command_size_limit`` after reading.
    """

    line_length_limit = STREAM_LIMIT

    def __init__(self, handler: SinkHandler, *, connections: set[SinkSMTP], **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._stats = handler.stats
        self._connections = connections

    _idle_deadline = 0.0

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd's idle timeout, moved forward without a new timer per command.

        aiosmtpd cancels and schedules a timer for every command; here the
        deadline moves and the one timer, when it fires early, re-arms itself.
        """
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._timeout_cb)

    def _timeout_cb(self) -> None:
        if self._idle_deadline > self.loop.time():
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._timeout_cb)
            return
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        if status[:3] in ("552", b"552"):
            self._stats.rejected += 1
        await super().push(status)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA command with the section read by :func:`read_data_section`."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert envelope is not None  # aiosmtpd makes one per transaction
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            section = await read_data_section(self._reader, self.data_size_limit)
        except asyncio.CancelledError:
            # The connection went away during DATA (aiosmtpd cancels on EOF).
            self._writer.close()
            raise
        if section.too_long or section.too_much:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            if section.too_long:
                await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            else:
                await self.push("552 Error: Too much mail data")
            return
        envelope.content = envelope.original_content = section.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's MAIL/RCPT address parsing, with a fast path for plain addresses.

        The general parser (the stdlib's RFC 5322 tokenizer) cost more CPU than
        the rest of a transaction; ``<local@host>`` with a dot-atom local part
        and a plain host name gives the same result from one regex.
        """
        found = _PLAIN_PATH.match(arg)
        if found is not None:
            rest = arg[found.end() :].lstrip(" \t")
            address = found.group(1)
            limit = self.local_part_limit
            too_long = limit and len(address.rpartition("@")[0]) > limit
            if not rest.startswith("(") and not too_long:
                return address, rest
        result: tuple[str | None, str | None] = super()._getaddr(arg)
        return result


class Sink:
    """The listening server plus its live connections (closed together)."""

    def __init__(self, server: asyncio.Server, connections: set[SinkSMTP]) -> None:
        self.server = server
        self.connections = connections
        sockname = server.sockets[0].getsockname()
        self.address: tuple[str, int] = (str(sockname[0]), int(sockname[1]))

    async def close(self) -> None:
        self.server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        await self.server.wait_closed()
        # Let each connection's handler task see its cancellation.
        for _ in range(3):
            await asyncio.sleep(0)


async def start_sink(
    cfg: DevInboxConfig, handler: SinkHandler, tls_context: ssl.SSLContext | None = None
) -> Sink:
    """Listen on ``[dev_inbox] smtp_host:smtp_port`` (port 0 picks a free port).

    With ``tls_context`` the sink offers STARTTLS; clients may still send in clear.
    """
    loop = asyncio.get_running_loop()
    connections: set[SinkSMTP] = set()
    factory = partial(
        SinkSMTP,
        handler,
        connections=connections,
        data_size_limit=cfg.max_message_size,
        enable_SMTPUTF8=True,
        hostname=socket.gethostname() or "resetd-inbox",
        ident="resetd dev inbox",
        auth_require_tls=False,
        authenticator=accept_any_login,
        tls_context=tls_context,
        require_starttls=False,
        loop=loop,
    )
    server = await loop.create_server(factory, host=cfg.smtp_host, port=cfg.smtp_port)
    sink = Sink(server, connections)
    log.info("dev inbox accepting mail on %s:%d", *sink.address)
    return sink
