"""Who may hand the SMTP sink mail: anyone on loopback, or AUTH with the inbox's password.

The HTTP side's counterpart is :mod:`.access`; both count wrong passwords in
one :class:`~resetd.inbox.guesses.GuessThrottle`.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ..config import DevInboxConfig
from ..hosts import is_local_host
from .guesses import GuessThrottle


class SinkLogin:
    """aiosmtpd's authenticator, and whether the sink needs one.

    Without a password it takes any credentials, so apps configured for a real
    relay just work. With one, AUTH is required before MAIL and takes that
    password under any user name; wrong ones count in the inbox's
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
        if not self.password:
            return AuthResult(success=True)
        peer = session.peer
        client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if self.throttle.retry_after(client) is not None:
            return AuthResult(success=False, handled=False, message=self.TOO_MANY)
        given = auth_data.password if isinstance(auth_data, LoginPassword) else b""
        if hmac.compare_digest(given, self.password):
            return AuthResult(success=True, auth_data=auth_data)
        self.throttle.failed(client)
        return AuthResult(success=False, handled=False)
