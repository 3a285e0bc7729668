"""The SMTP sink: aiosmtpd running inside the app's event loop.

It accepts what real applications send (SMTPUTF8, 8BITMIME, up to
``[dev_inbox] max_recipients`` recipients per message, AUTH PLAIN, LOGIN and
CRAM-MD5 with any credentials even without TLS, STARTTLS when
``[dev_inbox] starttls`` is on, implicit TLS on ``smtps_port``) and refuses
a message over ``max_message_size`` with aiosmtpd's 552 during the
transaction, after which the connection and the server carry on.
A recipient past the cap gets ``452 4.5.3`` (RFC 5321 §4.5.3.1.10), so the
client sends the rest in another transaction. The greeting hostname is given
explicitly, so no reverse-DNS lookup (``getfqdn``) ever runs. What happens to
a transaction's recipients and its message is the handler's business
(:mod:`.capture`): the message goes to the writer.

Listening beyond loopback (``allow_remote`` and a non-loopback ``smtp_host``),
the sink is no longer a local catch-all but a mail drop anyone could fill:
there it takes no MAIL before AUTH with the inbox's password
(:class:`~resetd.inbox.smtp_auth.SinkLogin`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket
import ssl
import time
from functools import partial
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, syntax

from ..config import DevInboxConfig
from .capture import BUSY, SinkHandler
from .smtp_auth import CramMD5, SinkLogin
from .smtp_data import LINE_LENGTH_LIMIT, STREAM_LIMIT, read_data_section
from .writer import Arrival

log = logging.getLogger(__name__)
# aiosmtpd's own logger, for the replies its push() logged.
_SMTP_LOG = logging.getLogger("mail.log")

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# ``<dot-atom@host.name>``: what nearly every client sends in MAIL FROM and RCPT TO.
_PLAIN_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


# Connections served at once; each may buffer up to twice STREAM_LIMIT of a
# command line, so this bounds that memory too. Past it: 421 instead of the
# greeting (RFC 5321 §3.8), and the client tries again later.
MAX_CONNECTIONS = 100
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
# Characters of an SMTP AUTH user name kept with each message.
USERNAME_LIMIT = 256
# A permanent refusal of this message only (RFC 3463 5.3.4: too big for the system).
LINE_TOO_LONG = f"552 5.3.4 Line too long: at most {LINE_LENGTH_LIMIT} octets per line"


class SinkSMTP(SMTP):
    """aiosmtpd's SMTP, counting refusals and remembering its open connections.

    DATA is read in bulk (:mod:`.smtp_data`) rather than aiosmtpd's line at a
    time. aiosmtpd sizes its stream buffer from ``line_length_limit``; only our
    DATA reader used that for lines, so here it is the buffer's size. Command
    lines are still held to aiosmtpd's ``command_size_limit`` after reading.
    """

    line_length_limit = STREAM_LIMIT

    def __init__(
        self,
        handler: SinkHandler,
        *,
        connections: set[SinkSMTP],
        login_required: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(handler, **kw)
        self._handler = handler
        self._stats = handler.stats
        self._connections = connections
        self._login_required = login_required

    async def check_auth_needed(self, caller_method: str) -> bool:
        """aiosmtpd's ``auth_required``, without its warning when TLS is not required too
        (the warning is right, and the README says so; a dev inbox may still need it).

        aiosmtpd's own check, inlined: it runs for every MAIL, RCPT and DATA, and
        a coroutine less per command is a few microseconds per message.
        """
        if self.session and self.session.authenticated:
            return False
        if self._auth_required:  # aiosmtpd's own, which logs
            _SMTP_LOG.info("%s: Authentication required", caller_method)
        elif not self._login_required:
            return False
        await self.push("530 5.7.0 Authentication required")
        return True

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

    _refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            self._refused = True
        else:
            self._connections.add(self)
        super().connection_made(transport)

    async def _handle_client(self) -> None:
        if self._refused:
            await self.push(TOO_MANY_CONNECTIONS)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        self._set_post_data_state()
        super().connection_lost(error)

    # The transaction under way, from MAIL to its message joining a batch: the
    # writer's next batch may wait for it (see InboxWriter.expect).
    _arrival: Arrival | None = None

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        await super().smtp_MAIL(arg)
        envelope = self.envelope
        if envelope is not None and envelope.mail_from is not None and self._arrival is None:
            self._arrival = self._handler.expect()

    def _set_post_data_state(self) -> None:
        """aiosmtpd's end of a transaction (after DATA, RSET, HELO/EHLO)."""
        arrival, self._arrival = self._arrival, None
        if arrival is not None:
            arrival.done()
        super()._set_post_data_state()  # type: ignore[no-untyped-call]

    async def push(self, status: AnyStr) -> None:
        """aiosmtpd's ``push``, counting refusals; inlined, as it runs four times per
        message (MAIL, RCPT, DATA and the end of the data)."""
        if status[:3] in ("552", b"552", "451", b"451"):
            self._stats.rejected += 1
        if isinstance(status, str):
            response = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        else:
            response = status
        self._writer.write(response + b"\r\n")
        if _SMTP_LOG.isEnabledFor(logging.DEBUG):
            _SMTP_LOG.debug("%r << %r", self.session.peer if self.session else None, response)
        await self._writer.drain()

    async def auth_CRAM__MD5(self, _: SMTP, args: list[str]) -> AuthResult:
        """AUTH CRAM-MD5 (RFC 2195), which aiosmtpd does not have: msmtp's default
        without TLS. The credentials go to the authenticator like PLAIN's."""
        if len(args) != 1:
            await self.push("501 5.5.4 CRAM-MD5 takes no initial response")
            return AuthResult(success=False, handled=True)
        challenge = f"<{secrets.randbits(64)}.{int(time.time())}@{self.hostname}>".encode()
        response = await self.challenge_auth(challenge)
        if not isinstance(response, bytes):  # aborted, or not base64: already answered
            return AuthResult(success=False, handled=True)
        login, _space, digest = response.rpartition(b" ")
        if not login or not digest:
            await self.push("501 5.5.2 Expected a user name and a digest")
            return AuthResult(success=False, handled=True)
        return self._authenticate("CRAM-MD5", CramMD5(login, challenge, digest))

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
        arrival, self._arrival = self._arrival or self._handler.expect(), None
        try:
            try:
                section = await read_data_section(
                    self._reader, self.data_size_limit, self._handler.spooler
                )
            except asyncio.CancelledError:
                # The connection went away during DATA (aiosmtpd cancels on EOF).
                self._writer.close()
                raise
            if section.too_long or section.too_much or section.busy:
                arrival.done()
                self._set_post_data_state()
                if section.too_much:
                    await self.push("552 Error: Too much mail data")
                elif section.too_long:
                    await self.push(LINE_TOO_LONG)
                else:
                    await self.push(BUSY)
                return
            status = await self._handler.capture(
                envelope, section.content, arrival, self._username()
            )
        finally:
            arrival.done()
        self._set_post_data_state()
        await self.push(status)

    def _username(self) -> str:
        """The SMTP AUTH user name of this session, "" without AUTH."""
        session = self.session
        login = getattr(session.auth_data, "login", None) if session is not None else None
        if not isinstance(login, bytes):
            return ""
        return login.decode("utf-8", "replace")[:USERNAME_LIMIT]

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
    """The listening servers plus their live connections (closed together)."""

    def __init__(
        self,
        server: asyncio.Server,
        connections: set[SinkSMTP],
        smtps: asyncio.Server | None = None,
    ) -> None:
        self.server = server
        self.smtps = smtps
        self.connections = connections
        self.address = _bound(server)
        self.smtps_address = _bound(smtps) if smtps is not None else None

    async def close(self) -> None:
        servers = [s for s in (self.server, self.smtps) if s is not None]
        for server in servers:
            server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for server in servers:
            await server.wait_closed()
        # Let each connection's handler task see its cancellation.
        for _ in range(3):
            await asyncio.sleep(0)


def _bound(server: asyncio.Server) -> tuple[str, int]:
    sockname = server.sockets[0].getsockname()
    return str(sockname[0]), int(sockname[1])


async def start_sink(
    cfg: DevInboxConfig,
    handler: SinkHandler,
    tls_context: ssl.SSLContext | None = None,
    login: SinkLogin | None = None,
) -> Sink:
    """Listen on ``[dev_inbox] smtp_host:smtp_port`` (port 0 picks a free port),
    and with ``smtps_port`` (>= 0) for implicit TLS there too.

    With ``tls_context`` and ``starttls`` the sink offers STARTTLS; clients may
    still send in clear, but when ``login`` requires a password AUTH waits for
    TLS, so the password never crosses the network in clear.
    """
    loop = asyncio.get_running_loop()
    connections: set[SinkSMTP] = set()
    login = login or SinkLogin()
    starttls = tls_context if cfg.starttls else None
    factory = partial(
        SinkSMTP,
        handler,
        connections=connections,
        login_required=login.required,
        data_size_limit=cfg.max_message_size,
        enable_SMTPUTF8=True,
        hostname=socket.gethostname() or "resetd-inbox",
        ident="resetd dev inbox",
        auth_require_tls=login.required and starttls is not None,
        authenticator=login,
        tls_context=starttls,
        require_starttls=False,
        loop=loop,
    )
    server = await loop.create_server(factory, host=cfg.smtp_host, port=cfg.smtp_port)
    smtps = None
    if cfg.smtps_port >= 0 and tls_context is not None:
        # Already encrypted: no STARTTLS to offer, and AUTH needs no more TLS.
        implicit = partial(factory, tls_context=None, auth_require_tls=False)
        try:
            smtps = await loop.create_server(
                implicit, host=cfg.smtp_host, port=cfg.smtps_port, ssl=tls_context
            )
        except BaseException:
            server.close()
            raise
    sink = Sink(server, connections, smtps)
    log.info("dev inbox accepting mail on %s:%d", *sink.address)
    if sink.smtps_address is not None:
        log.info("dev inbox accepting mail over implicit TLS on %s:%d", *sink.smtps_address)
    return sink
