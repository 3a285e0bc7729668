"""A mail as it travels to the relay: its MAIL and RCPT commands and its data.

An address may hold nothing that could end or add a command. An
internationalised address (or UTF-8 header fields) goes with SMTPUTF8 and 8-bit
content with BODY=8BITMIME when the relay offers them; otherwise that mail alone
fails for good, with a reason that names no local part.
"""

from __future__ import annotations

import re

from .failures import PermanentFailure

# Control characters would let an address inject commands; <, > and spaces have
# no place in the bare addresses resetd sends to.
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")


def data_payload(message: bytes) -> bytes:
    """``message`` as it travels after DATA: CRLF line endings, a dot doubled at the
    start of any line (RFC 5321 §4.5.2), ending with the ``.`` line."""
    crlf = message.count(b"\r\n")
    if message.count(b"\r") != crlf or message.count(b"\n") != crlf:
        message = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    message = message.replace(b"\r\n.", b"\r\n..")
    if message.startswith(b"."):
        message = b"." + message
    return message + b".\r\n"


def path(address: str) -> bytes:
    """``<address>`` for MAIL or RCPT; PermanentFailure for one no command may carry."""
    if not address or _UNSAFE_ADDRESS.search(address):
        raise PermanentFailure(f"unsendable address: {address[:80]!r}")
    return b"<" + address.encode("utf-8") + b">"


def needs_utf8(sender: str, recipient: str, payload: bytes) -> str | None:
    """What in this mail needs SMTPUTF8 (RFC 6531), named without the local part of
    an address (the reason is logged and stored); None when nothing does."""
    if not recipient.isascii():
        return "recipient …@" + recipient.rpartition("@")[2]
    if not sender.isascii():
        return "sender …@" + sender.rpartition("@")[2]
    if not payload.isascii():
        end = payload.find(b"\r\n\r\n")
        if not payload[: end if end >= 0 else len(payload)].isascii():
            return "UTF-8 header fields"
    return None


def envelope(
    sender: str, recipient: str, payload: bytes, *, smtputf8: bool, eightbitmime: bool, size: bool
) -> tuple[bytes, bytes]:
    """The MAIL and RCPT commands for one mail, with the options it needs from a
    relay that offers SMTPUTF8, 8BITMIME and SIZE as told. Raises
    PermanentFailure when it needs what the relay does not offer, or for an
    address no command may carry."""
    options = b""
    has_8bit = not payload.isascii()
    if has_8bit or not (sender + recipient).isascii():
        needs = needs_utf8(sender, recipient, payload)
        if needs is not None:
            if not smtputf8:
                # Permanent: this relay never will, and the mail must not hold others.
                raise PermanentFailure(f"relay does not offer SMTPUTF8, needed for {needs}")
            options += b" SMTPUTF8"
        elif not eightbitmime:
            raise PermanentFailure("relay does not offer 8BITMIME, needed for 8-bit content")
        if has_8bit and eightbitmime:
            options += b" BODY=8BITMIME"
    if size:
        options += b" SIZE=%d" % (len(payload) - 3)
    mail = b"MAIL FROM:" + path(sender) + options + b"\r\n"
    return mail, b"RCPT TO:" + path(recipient) + b"\r\n"
