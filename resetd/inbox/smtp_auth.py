"""Who may hand the SMTP sink mail: anyone on loopback, or AUTH with the inbox's password.

The HTTP side's counterpart is :mod:`.access`; both count wrong passwords in
one :class:`~resetd.inbox.guesses.GuessThrottle`.
"""

from __future__ import annotations

import hmac
from typing import Any, NamedTuple

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ..config import DevInboxConfig
from ..hosts import is_local_host
from .guesses import GuessThrottle


class CramMD5(NamedTuple):
    """What a CRAM-MD5 client sent (RFC 2195): its user name and the keyed
    digest of our challenge; the password itself never crosses the wire."""

    login: bytes
    challenge: bytes
    digest: bytes  # hex HMAC-MD5 of the challenge, keyed with the password

    def matches(self, password: bytes) -> bool:
        expected = hmac.new(password, self.challenge, "md5").hexdigest().encode()
        return hmac.compare_digest(self.digest.lower(), expected)


class SinkLogin:
    """aiosmtpd's authenticator, and whether the sink needs one.

    Without a password it takes any credentials (PLAIN, LOGIN or CRAM-MD5), so
    apps configured for a real relay just work. With one, AUTH is required
    before MAIL and takes that password under any user name (CRAM-MD5: a
    digest keyed with it); wrong ones count in the inbox's
    :class:`~resetd.inbox.guesses.GuessThrottle`, and past its limit every
    attempt gets 454 unchecked.
    """

    TOO_MANY = "454 4.7.0 Too many wrong passwords, try again later"

    def __init__(self, password: str = "", throttle: GuessThrottle | None = None) -> None:
        self.password = password.encode()
        self.throttle = throttle or GuessThrottle()

    @classmethod
    def for_config(cls, cfg: DevInboxConfig, throttle: GuessThrottle) -> SinkLogin:
        """The password is required only where anyone but this machine can connect."""
        local = is_local_host(cfg.smtp_host)
        return cls("" if local or not cfg.allow_remote else cfg.password, throttle)

    @property
    def required(self) -> bool:
        return bool(self.password)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not self.password:  # any credentials; the user name is kept with the mail
            return AuthResult(success=True, auth_data=auth_data)
        peer = session.peer
        client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if self.throttle.retry_after(client) is not None:
            return AuthResult(success=False, handled=False, message=self.TOO_MANY)
        if isinstance(auth_data, CramMD5):
            right = auth_data.matches(self.password)
        else:
            given = auth_data.password if isinstance(auth_data, LoginPassword) else b""
            right = hmac.compare_digest(given, self.password)
        if right:
            return AuthResult(success=True, auth_data=auth_data)
        self.throttle.failed(client)
        return AuthResult(success=False, handled=False)
