"""What a relay's answer means for a mail: failed for good, or tried again later.

Delivery raises exactly these, or nothing when the relay accepted the mail
(:mod:`resetd.outbox.attempts` records what each means): a 5xx reply or a mail
that can never be sent is a :class:`PermanentFailure`; a lost connection, a
timeout or a 4xx reply a :class:`TemporaryFailure`. A relay refusing the session
itself (its greeting, EHLO, STARTTLS, AUTH or certificate) is a
:class:`SessionRefused`: temporary, since the mail is not at fault.
"""

from __future__ import annotations


class PermanentFailure(Exception):
    """The relay refused the mail for good (5xx), or it can never be sent; do not retry."""


class TemporaryFailure(Exception):
    """Try again later (connection trouble, timeout, 4xx)."""


class SessionRefused(TemporaryFailure):
    """The relay refused the session itself (a 5xx to the greeting, EHLO, STARTTLS or
    AUTH, such as 535 for wrong credentials). That says nothing about the mail: it
    stays queued until the settings or the relay are fixed, or ``max_age`` ends.

    ``reply`` is what went wrong, ``hint`` (maybe empty) one line on what to change;
    the text of the exception carries both."""

    def __init__(self, reply: str, hint: str = "") -> None:
        super().__init__(f"{reply}; hint: {hint}" if hint else reply)
        self.reply = reply
        self.hint = hint


class CertificateRefused(SessionRefused):
    """The relay's TLS certificate did not verify (self-signed, a private CA, another
    name, expired): a settings problem on one side or the other, never the mail's."""


def failure(code: int, text: str) -> PermanentFailure | TemporaryFailure:
    """A relay's refusal: 5xx is permanent, anything else is worth another try."""
    reply = f"{code} {text}".strip()
    return PermanentFailure(reply) if 500 <= code < 600 else TemporaryFailure(reply)
