"""The outbox's side of SMTP: one reusable connection to the relay, and what its
failures mean.

The worker in :mod:`resetd.outbox` keeps ``[mail] pool_size`` of these
connections, each opened on first use and kept open between mails, so a burst of
requests costs a handful of TCP/TLS handshakes rather than one per mail.
:meth:`SmtpConnection.send` raises exactly two things: :class:`PermanentFailure`
(a 5xx reply or a mail that can never be sent) and :class:`TemporaryFailure`
(connection trouble, a timeout, a 4xx reply).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import aiosmtplib

from .config import MailConfig

RelayAddress = Callable[[], tuple[str, int]]


class PermanentFailure(Exception):
    """The relay refused the mail for good (5xx), or it can never be sent; do not retry."""


class TemporaryFailure(Exception):
    """Try again later (connection trouble, timeout, 4xx)."""


# After these the server replied and aiosmtplib reset the envelope (RSET), so the
# session is still good for the next mail. After anything else, reconnect.
_SESSION_STILL_GOOD = (
    aiosmtplib.SMTPRecipientsRefused,
    aiosmtplib.SMTPRecipientRefused,
    aiosmtplib.SMTPSenderRefused,
    aiosmtplib.SMTPDataError,
    ValueError,
)


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


def classify(exc: Exception) -> PermanentFailure | TemporaryFailure:
    """Map an aiosmtplib/socket error to a Permanent- or TemporaryFailure whose text
    is the server's reply when there was one."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [e.code for e in exc.recipients]
        text = "; ".join(_reply(e) for e in exc.recipients)
        if codes and all(500 <= c < 600 for c in codes):
            return PermanentFailure(text)
        return TemporaryFailure(text)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TemporaryFailure(f"timeout: {exc}" if str(exc) else "timeout")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return TemporaryFailure(f"disconnected: {exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if 500 <= exc.code < 600:
            return PermanentFailure(_reply(exc))
        return TemporaryFailure(_reply(exc))
    if isinstance(exc, ValueError):  # aiosmtplib: an address that cannot be sent safely
        return PermanentFailure(f"unsendable address: {exc}")
    return TemporaryFailure(f"{type(exc).__name__}: {exc}")


class SmtpConnection:
    """One reusable connection to the relay, opened on first use, reopened after errors.

    Not safe for concurrent use: the worker gives each connection its own task.
    """

    def __init__(self, cfg: MailConfig, relay: RelayAddress) -> None:
        self.cfg = cfg
        self.relay = relay
        self._smtp: aiosmtplib.SMTP | None = None
        self.opened = 0  # how many times this slot connected (visible to tests/bench)

    async def _connect(self) -> aiosmtplib.SMTP:
        host, port = self.relay()
        smtp = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            timeout=self.cfg.timeout,
            use_tls=self.cfg.use_ssl,
            start_tls=self.cfg.use_tls,
            username=self.cfg.username or None,
            password=self.cfg.password or None,
        )
        self._smtp = smtp  # before connecting, so abort() can reach it
        await smtp.connect()
        self.opened += 1
        return smtp

    async def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Deliver one message; returns once the relay accepted it.

        Raises PermanentFailure or TemporaryFailure (and nothing else from SMTP or
        the network)."""
        try:
            smtp = self._smtp
            if smtp is None or not smtp.is_connected:
                smtp = await self._connect()
            options = [] if (sender + recipient).isascii() else ["SMTPUTF8"]
            await smtp.sendmail(sender, [recipient], message, mail_options=options)
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            # OSError covers refused connections, TLS errors and TimeoutError.
            outcome = classify(exc)
            if not isinstance(exc, _SESSION_STILL_GOOD):
                await self.close()
            raise outcome from exc

    def abort(self) -> None:
        """Cut the connection now; a send in progress fails with TemporaryFailure."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def close(self) -> None:
        """Say QUIT if the connection is up (bounded), then drop it."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            if smtp.is_connected:
                await smtp.quit(timeout=min(2.0, self.cfg.timeout))
        smtp.close()
