"""The outbox's side of SMTP: a pool slot's reusable connection to the relay.

The worker in :mod:`resetd.outbox.worker` keeps ``[mail] pool_size`` of these
connections, each opened on first use and kept open between mails, so a burst of
requests costs a handful of TCP/TLS handshakes rather than one per mail.
:meth:`SmtpConnection.send` raises exactly two things: :class:`PermanentFailure`
(a 5xx reply or a mail that can never be sent) and :class:`TemporaryFailure`
(connection trouble, a timeout, a 4xx reply).

aiosmtplib opens the session (connect, implicit TLS or STARTTLS, EHLO, AUTH);
then the transport is handed to :class:`~resetd.outbox.smtp.RelaySession`, which
runs the mail transactions (pipelined when the relay allows it). The relay's
certificate is checked against the system's CAs, or only against
``[mail] ca_file`` when that is set (for this connection only, not the whole
process as ``SSL_CERT_FILE`` would). What the relay does with a new connection
is reported to the :class:`~resetd.outbox.gate.RelayGate` all connections share.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import aiosmtplib

from ..config import MailConfig
from .envelope import data_payload
from .failures import CertificateRefused, SessionRefused, TemporaryFailure
from .gate import RelayGate
from .smtp import NextMail, RelaySession

RelayAddress = Callable[[], tuple[str, int]]


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


# OpenSSL's X509_V_ERR_* codes that call for a hint of their own.
_NAME_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_EXPIRED = {9, 10}  # CERT_NOT_YET_VALID, CERT_HAS_EXPIRED
_UNTRUSTED = {2, 18, 19, 20, 21}  # no issuer, self-signed, unknown local issuer


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate error behind ``exc`` (aiosmtplib wraps it), if there is one."""
    for _ in range(4):
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        cause = exc.__cause__ or exc.__context__
        if cause is None:
            return None
        exc = cause
    return None


def _certificate_hint(err: ssl.SSLCertVerificationError, host: str) -> str:
    if err.verify_code in _NAME_MISMATCH:
        return f"the certificate does not name {host!r}: set [mail] server to a name it carries"
    if err.verify_code in _EXPIRED:
        return "the relay's certificate is outside its validity dates: renew it on the relay"
    if err.verify_code in _UNTRUSTED:
        return (
            "the relay's certificate is self-signed or from a private CA: set [mail] "
            "ca_file to that CA's certificate (PEM)"
        )
    return "check the relay's certificate, or set [mail] ca_file to the CA that signed it"


def tls_context(cfg: MailConfig) -> ssl.SSLContext:
    """The context every connection to the relay uses: certificates and names
    checked, against ``[mail] ca_file`` alone when it is set."""
    return ssl.create_default_context(cafile=cfg.ca_file or None)


def classify(exc: Exception, host: str = "") -> TemporaryFailure:
    """Map an aiosmtplib/socket error from opening a session to a TemporaryFailure
    whose text is the server's reply when there was one. Nothing that goes wrong
    before MAIL FROM fails the mail: a refused session is a SessionRefused, a
    certificate that does not verify a CertificateRefused with a hint."""
    cert = _certificate_error(exc)
    if cert is not None:
        reason = (cert.verify_message or cert.reason or str(cert)).rstrip(".")
        return CertificateRefused(
            f"TLS certificate not accepted: {reason}", _certificate_hint(cert, host)
        )
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TemporaryFailure(f"timeout: {exc}" if str(exc) else "timeout")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return TemporaryFailure(f"disconnected: {exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code == 535:
            return SessionRefused(_reply(exc), "check [mail] username and password")
        if 500 <= exc.code < 600:
            return SessionRefused(_reply(exc))
        return TemporaryFailure(_reply(exc))
    return TemporaryFailure(f"{type(exc).__name__}: {exc}")


class SmtpConnection:
    """One reusable connection to the relay, opened on first use, reopened after errors.

    Not safe for concurrent use: the worker gives each connection its own task.
    """

    def __init__(
        self,
        cfg: MailConfig,
        relay: RelayAddress,
        gate: RelayGate | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.relay = relay
        self.gate = gate or RelayGate(1, cfg.retry_base, cfg.backoff_cap)
        if tls is None and (cfg.use_tls or cfg.use_ssl):
            tls = tls_context(cfg)
        self._tls = tls
        self._opening: aiosmtplib.SMTP | None = None
        self._session: RelaySession | None = None
        self.opened = 0  # how many times this slot connected (visible to tests/bench)
        self.pipelining = False  # whether the last session pipelines (visible to tests)

    @property
    def connected(self) -> bool:
        """Whether a session is open, so that sending needs no new connection."""
        return self._session is not None and self._session.usable

    async def _connect(self, host: str, port: int) -> RelaySession:
        smtp = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            timeout=self.cfg.timeout,
            use_tls=self.cfg.use_ssl,
            start_tls=self.cfg.use_tls,
            tls_context=self._tls,
            username=self.cfg.username or None,
            password=self.cfg.password or None,
        )
        self._opening = smtp  # before connecting, so abort() can reach it
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:  # connect() skips it without TLS or AUTH
                try:
                    await smtp.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await smtp.helo()
            transport = smtp.transport
            if not isinstance(transport, asyncio.Transport) or transport.is_closing():
                raise aiosmtplib.SMTPServerDisconnected("connection lost after the handshake")
            session = RelaySession(
                transport, dict(smtp.esmtp_extensions), self.cfg.timeout, self.cfg.data_timeout
            )
        except BaseException:
            smtp.close()
            raise
        finally:
            self._opening = None
        self._session = session
        self.opened += 1
        self.pipelining = session.pipelining
        return session

    async def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        then: NextMail | None = None,
    ) -> None:
        """Deliver one message; returns once the relay accepted it.

        Raises PermanentFailure or TemporaryFailure (and nothing else from SMTP or
        the network).

        When the relay pipelines and has accepted this message's envelope,
        ``then()`` may return the (sender, recipient, message) this connection
        sends next: its envelope goes out behind this message's data. Sending
        another message next costs a new session."""
        payload = data_payload(message)
        session = self._session
        if session is not None and not session.expects(sender, recipient, payload):
            self.abort()  # the relay is waiting for another mail's content
            session = None
        if session is None or not session.usable:
            self.abort()
            host, port = self.relay()
            try:
                session = await self._connect(host, port)
            except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
                # OSError covers refused connections, TLS errors and TimeoutError.
                failed = classify(exc, host)
                self.gate.refused(self, failed)
                raise failed from exc
            self.gate.opened(self)
        try:
            await session.transaction(sender, recipient, payload, then)
        except TemporaryFailure as exc:
            if session.goodbye is not None:  # a 421: the relay wants fewer of us
                self.gate.refused(self, exc)
            raise
        else:
            self.gate.accepted()
        finally:
            if not session.usable:  # a timeout or drop: the session's state is unknown
                self.abort()

    def abort(self) -> None:
        """Cut the connection now; a send in progress fails with TemporaryFailure."""
        self._abort_opening()
        session, self._session = self._session, None
        if session is not None:
            self.gate.lost(self)
            session.transport.abort()

    async def close(self) -> None:
        """Say QUIT if the connection is up (bounded), then drop it."""
        self._abort_opening()
        session, self._session = self._session, None
        if session is not None:
            self.gate.lost(self)
            await session.quit(min(2.0, self.cfg.timeout))

    def _abort_opening(self) -> None:
        smtp, self._opening = self._opening, None
        if smtp is not None:
            smtp.close()
