"""The SMTP sink: aiosmtpd running inside the app's event loop.

It accepts what real applications send (SMTPUTF8, 8BITMIME, any number of
recipients, AUTH PLAIN/LOGIN with any credentials even without TLS) and
refuses a message over ``max_message_size`` with aiosmtpd's 552 during the
transaction, after which the connection and the server carry on. The greeting
hostname is given explicitly, so no reverse-DNS lookup (``getfqdn``) ever runs.
Accepted mail is handed to the :class:`~resetd.inbox.writer.InboxWriter`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from ..config import DevInboxConfig
from .ingest import Incoming
from .writer import InboxWriter

log = logging.getLogger(__name__)


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
        await self.writer.submit(
            Incoming(time.time(), envelope.mail_from or "", list(envelope.rcpt_tos), raw)
        )
        self.stats.accepted += 1
        self.stats.accepted_size += len(raw)
        return "250 2.0.0 OK: captured"


def accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """A dev inbox takes any credentials, so apps configured for a real relay just work."""
    return AuthResult(success=True)


class SinkSMTP(SMTP):
    """aiosmtpd's SMTP, counting refusals and remembering its open connections."""

    def __init__(self, handler: SinkHandler, *, connections: set[SinkSMTP], **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._stats = handler.stats
        self._connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        if (status if isinstance(status, str) else status.decode("ascii", "replace")).startswith(
            "552"
        ):
            self._stats.rejected += 1
        await super().push(status)


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


async def start_sink(cfg: DevInboxConfig, handler: SinkHandler) -> Sink:
    """Listen on ``[dev_inbox] smtp_host:smtp_port`` (port 0 picks a free port)."""
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
        loop=loop,
    )
    server = await loop.create_server(factory, host=cfg.smtp_host, port=cfg.smtp_port)
    sink = Sink(server, connections)
    log.info("dev inbox accepting mail on %s:%d", *sink.address)
    return sink
