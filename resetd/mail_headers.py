"""The headers of the mail resetd sends: every outside value cleaned, encoded, folded.

Display names come from a users table (resetd's own, or an application's that
resetd does not control) and the sender from the config; none of them may add a
header, end the header block, or break a line limit. Every value is cleaned of
control characters, then written as plain words when it is short printable
ASCII, and otherwise as RFC 2047 encoded words of at most 75 characters, folded
onto lines of at most 78 (RFC 5322 §2.1.1). A name that merely looks like an
encoded word (``=?utf-8?b?…?=``) is encoded too, so mail readers show it as
typed instead of decoding it into something else. An address with a non-ASCII
local part is written as UTF-8 (RFC 6532); its mail needs a relay offering
SMTPUTF8, which the outbox asks for when the envelope is not ASCII.

Why not ``email.headerregistry``: on Python 3.11 it decodes a display name that
looks like an encoded word instead of encoding it, writes encoded words of 76
characters, leaves a 1,200-character word on one line, and refuses a non-ASCII
local part; it also costs about 40 µs a header on the hot path of every reset
mail, where the plain-ASCII fast path below costs about 1 µs.
"""

from __future__ import annotations

import base64
import re

import idna

from .errors import UnsendableAddress

LINE = 78  # RFC 5322's recommended limit; 998 is the hard one
_EW_PAYLOAD = 63  # "=?utf-8?q?" + payload + "?=" stays within RFC 2047's 75
_B_CHUNK = _EW_PAYLOAD // 4 * 3  # bytes per base64 encoded word: 60 characters
_WORD = 60  # a longer unbroken word could not be folded: encode it instead

# C0, DEL, C1 and the Unicode line and paragraph separators: none has a place in
# a header, and CR or LF would start a new header or end the header block.
_CONTROLS = {c: " " for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
# Printable ASCII words that can stand as they are in a phrase (RFC 5322 atext).
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*")
# What RFC 2047 §5(3) lets a "Q" encoded word in a phrase carry literally.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
# Characters an address resetd sends to may not hold (it never quotes a local
# part): they would need quoting, or let it inject SMTP commands or headers.
_ADDRESS_SPECIALS = frozenset('<>()[]\\,;:"@ ')


def clean(value: str) -> str:
    """``value`` with control characters, line breaks and runs of white space
    turned into single spaces, trimmed, and lone surrogates (undecodable bytes
    from outside) replaced by U+FFFD: text fit for a header or a mail body."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 else c for c in value)
    return " ".join(value.translate(_CONTROLS).split())


def check_address(address: str) -> str:
    """The address as it goes in the envelope and the ``To:`` header.

    Trimmed; a non-ASCII domain behind an ASCII local part becomes its IDNA
    A-label (``bücher.de`` → ``xn--bcher-kva.de``) so that any relay can take
    it; a non-ASCII local part stays UTF-8 (RFC 6531/6532). Raises
    :class:`UnsendableAddress` for anything resetd cannot safely put in an SMTP
    command or a header: no ``@``, an empty part, white space, control or
    quoting characters, more than 254 bytes.
    """
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or domain.startswith(".") or domain.endswith("."):
        raise UnsendableAddress("not an address of the form local@domain")
    if not address.isprintable() or not _ADDRESS_SPECIALS.isdisjoint(local + domain):
        raise UnsendableAddress("the address holds white space, control or quoting characters")
    if local.isascii() and not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            pass  # left as UTF-8: a relay offering SMTPUTF8 may still take it
        address = f"{local}@{domain}"
    if len(address.encode("utf-8")) > 254:
        raise UnsendableAddress("the address is longer than 254 bytes")
    return address


def address_header(name: str, display_name: str, address: str) -> str:
    """``Name: display name <address>``, folded (CRLF + space), without a final CRLF.

    ``address`` must come from :func:`check_address`; ``display_name`` may be
    anything and is cleaned here."""
    display_name = clean(display_name)
    if not display_name:
        return _fold(name, [address])
    return _fold(name, [*_phrase(display_name, LINE - len(name) - 2), f"<{address}>"])


def unstructured_header(name: str, value: str) -> str:
    """``Name: value`` for free text such as a subject, cleaned, encoded, folded."""
    value = clean(value)
    if _plain(value):
        return _fold(name, value.split(" "))
    return _fold(name, encoded_words(value, LINE - len(name) - 2))


def _plain(text: str) -> bool:
    """Printable ASCII whose every word folds and none reads as an encoded word."""
    return (
        text.isascii()
        and "=?" not in text
        and (len(text) <= _WORD or max(len(w) for w in text.split(" ")) <= _WORD)
    )


def _phrase(text: str, first: int) -> list[str]:
    """A display name as the words of an RFC 5322 phrase: atoms, a quoted string
    (folded at its spaces, which unfold to the same text), or encoded words (the
    first at most ``first`` characters)."""
    if not _plain(text):
        return encoded_words(text, first)
    if _ATOMS.fullmatch(text):
        return text.split(" ")
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return quoted.split(" ")


def encoded_words(text: str, first: int = 75) -> list[str]:
    """``text`` as RFC 2047 encoded words of whole characters, the first at most
    ``first`` characters long (so that it fits on the header's first line) and
    the others at most 75: "Q" for ASCII (it stays readable), "B" otherwise."""
    room = max(first, 20) - 12  # "=?utf-8?q?" … "?="
    if text.isascii():
        return _q_words(text, room)
    words: list[str] = []
    chunk: list[bytes] = []
    size, most = 0, room // 4 * 3  # base64: 4 characters per 3 bytes
    for char in text:
        data = char.encode("utf-8")
        if size + len(data) > most:
            words.append("=?utf-8?b?" + base64.b64encode(b"".join(chunk)).decode() + "?=")
            chunk, size, most = [], 0, _B_CHUNK
        chunk.append(data)
        size += len(data)
    if chunk:
        words.append("=?utf-8?b?" + base64.b64encode(b"".join(chunk)).decode() + "?=")
    return words


def _q_words(text: str, room: int) -> list[str]:
    words: list[str] = []
    payload: list[str] = []
    size = 0
    for byte in text.encode("ascii"):
        if byte == 0x20:
            piece = "_"
        elif byte in _Q_SAFE:
            piece = chr(byte)
        else:
            piece = f"={byte:02X}"
        if size + len(piece) > room:
            words.append("=?utf-8?q?" + "".join(payload) + "?=")
            payload, size, room = [], 0, _EW_PAYLOAD
        payload.append(piece)
        size += len(piece)
    if payload:
        words.append("=?utf-8?q?" + "".join(payload) + "?=")
    return words


def _fold(name: str, words: list[str]) -> str:
    """``Name:`` and ``words`` separated by single spaces, starting a new line
    (CRLF + space) before a word that would take the line past 78 characters.
    Every word but an address is at most 75 characters, so only a line holding
    a long address can be longer, and never near 998."""
    lines: list[str] = []
    line = name + ":"
    for word in words:
        # Even right after the name: "To:" CRLF SP word is a valid fold.
        if len(line) + 1 + len(word) > LINE:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines)
