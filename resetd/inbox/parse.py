"""Reading captured mail with the stdlib parser: headers, addresses, parts, bodies.

Everything here works on the raw bytes as received and never raises for bad
input: the stdlib parser (``compat32``, the fastest policy) records what it
could not understand as defects, and anything that still goes wrong while
decoding a header or a part is caught and reported as the message's *parse
problem*, so a malformed message is stored and shown, never a 500.

Part IDs follow Mailpit: dotted 1-based positions in the MIME tree ("1",
"1.2"); a single-part message's only part is "1".
"""

from __future__ import annotations

import email.errors
import email.utils
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from typing import Any

# What the stdlib email package raises on input it cannot make sense of
# (bad charsets, broken encoded words, odd structures); caught at the edges.
MIME_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # includes email.errors.MessageError subclasses' HeaderParseError
    LookupError,  # unknown charset / codec
    TypeError,
    AttributeError,
    IndexError,
    email.errors.MessageError,
)

_WS = re.compile(r"\s+")
_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_PARSER = BytesParser(policy=compat32)
_SIMPLE_ADDRESS = re.compile(
    r'\s*(?:([^"<>,;:@()\\]*?)\s*<([^\s<>,;:"()@]+@[^\s<>,;:"()@]+)>|([^\s<>,;:"()@]+@[^\s<>,;:"()@]+))\s*'
)


@dataclass(frozen=True)
class Address:
    name: str
    address: str

    def as_json(self) -> dict[str, str]:
        return {"Name": self.name, "Address": self.address}


@dataclass(frozen=True)
class Part:
    part_id: str
    content_type: str
    filename: str
    content_id: str
    disposition: str
    message: Message


def parse_bytes(raw: bytes) -> Message:
    return _PARSER.parsebytes(raw)


def fix_8bit(value: str) -> str:
    """Header text as parsed from bytes keeps raw UTF-8 as surrogates; undo that."""
    if value.isascii():
        return value
    try:
        return value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; the raw text when they are broken."""
    value = fix_8bit(value)
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except MIME_ERRORS:
        return value


def headers(msg: Message) -> list[tuple[str, str]]:
    """Every header of ``msg`` in order, decoded for display."""
    return [(fix_8bit(str(k)), decode_words(str(v))) for k, v in msg.raw_items()]


def header_map(msg: Message) -> dict[str, list[str]]:
    """Raw header values by lower-cased name (8-bit text repaired, words not decoded)."""
    found: dict[str, list[str]] = {}
    for key, value in msg.raw_items():
        found.setdefault(key.lower(), []).append(fix_8bit(str(value)))
    return found


def header(found: dict[str, list[str]], name: str) -> str:
    values = found.get(name)
    return decode_words(values[0]) if values else ""


def addresses(found: dict[str, list[str]], name: str) -> list[Address]:
    values = found.get(name)
    if not values:
        return []
    if len(values) == 1 and (simple := _SIMPLE_ADDRESS.fullmatch(values[0])):
        # The common shapes, ``a@b`` and ``Name <a@b>``, without the slow general parser.
        name = (simple.group(1) or "").strip()
        return [Address(decode_words(name), simple.group(2) or simple.group(3))]
    out: list[Address] = []
    for display, addr in email.utils.getaddresses(values):
        if addr or display:
            out.append(Address(decode_words(display), addr.strip()))
    return out


def walk(msg: Message, prefix: str = "") -> list[Part]:
    """The leaf parts of ``msg`` with their Mailpit-style PartIDs."""
    content_type = msg.get_content_type()
    if content_type.startswith("multipart/") and msg.is_multipart():
        out: list[Part] = []
        payload = msg.get_payload()
        for n, sub in enumerate(payload if isinstance(payload, list) else [], start=1):
            if isinstance(sub, Message):
                out.extend(walk(sub, f"{prefix}{n}."))
        return out
    disposition = (msg.get_content_disposition() or "").lower()
    filename = decode_words(msg.get_filename("") or "")
    content_id = fix_8bit(str(msg.get("Content-ID", ""))).strip().strip("<>")
    part_id = (prefix or "1.").rstrip(".")
    return [Part(part_id, content_type, filename, content_id, disposition, msg)]


def is_body(part: Part) -> bool:
    return (
        part.content_type in ("text/plain", "text/html")
        and part.disposition != "attachment"
        and not part.filename
    )


def payload_bytes(part: Part) -> bytes:
    """The decoded content of a leaf part (a nested message as its source)."""
    msg = part.message
    if msg.is_multipart():  # message/rfc822 and friends
        try:
            inner = msg.get_payload(0)
            return inner.as_bytes() if isinstance(inner, Message) else b""
        except MIME_ERRORS:
            return b""
    data: Any = msg.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def payload_text(part: Part) -> str:
    data = payload_bytes(part)
    charset = part.message.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def html_to_text(html: str) -> str:
    return _WS.sub(" ", _TAGS.sub(" ", html)).strip()


def problems(msg: Message) -> list[str]:
    found: list[str] = []
    for sub in msg.walk():
        for defect in sub.defects:
            name = type(defect).__name__
            if name not in found:
                found.append(name)
    return found
