"""Reading captured mail with the stdlib parser, for what :mod:`.quick_mime` does not take.

This runs in the parser process (:mod:`.parser`), under its time limit: the
stdlib's ``FeedParser`` is Python code that reads a line at a time, recurses
into nested parts (a ``Content-Type`` nested 1,000 deep raises
RecursionError) and splits parameters in quadratic time. Nothing here raises
for bad input: what the parser could not understand is a defect, and what
still goes wrong is caught by the caller and becomes the message's *parse
problem*, so a malformed message is stored and shown, never a 500.

Part IDs follow Mailpit: dotted 1-based positions in the MIME tree ("1",
"1.2"); a single-part message's only part is "1".
"""

from __future__ import annotations

import email.errors
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from functools import partial
from typing import Any, NamedTuple

from .headertext import codec, decode_words, fix_8bit, valid

# What the stdlib email package raises on input it cannot make sense of
# (bad charsets, broken encoded words, odd structures, deep nesting); caught
# at the edges.
MIME_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # includes email.errors.MessageError subclasses' HeaderParseError
    LookupError,  # unknown charset / codec
    TypeError,
    AttributeError,
    IndexError,
    RecursionError,
    email.errors.MessageError,
)
# Parts nested deeper than this, or past this many leaves, are not listed.
MAX_DEPTH = 50
MAX_PARTS = 1000
_PARSER = BytesParser(policy=compat32)


class Span(NamedTuple):
    """Where a part's content lies in the raw source, and whether it is quoted-printable
    (else its transfer encoding leaves the bytes as they are)."""

    start: int
    end: int
    qp: bool


class Leaf(NamedTuple):
    """A leaf of the MIME tree, as the summary and the view need it."""

    part_id: str
    content_type: str
    filename: str
    content_id: str
    disposition: str  # lower-cased, "" when there is none
    charset: str
    data: Any  # () -> bytes: the decoded content, computed only when asked
    span: Span | None = None  # where the content lies in the raw source, when known

    @property
    def is_body(self) -> bool:
        """A text/plain or text/html part shown as the message body, not an attachment."""
        return (
            self.content_type in ("text/plain", "text/html")
            and self.disposition != "attachment"
            and not self.filename
        )

    def text(self) -> str:
        return decode_text(self.data(), self.charset)


def decode_text(data: bytes, charset: str) -> str:
    """``data`` read in ``charset`` (UTF-8 when unknown), as valid Unicode."""
    try:
        return valid(data.decode(codec(charset or "utf-8") or "utf-8", "replace"))
    except (LookupError, UnicodeError, TypeError, ValueError):
        return valid(data.decode("utf-8", "replace"))


def parse_bytes(raw: bytes) -> Message:
    return _PARSER.parsebytes(raw)


def header_list(msg: Message) -> list[tuple[str, str]]:
    """Every top-level header as (name, raw value), 8-bit text repaired, in order."""
    return [(fix_8bit(str(k)), fix_8bit(str(v))) for k, v in msg.raw_items()]


def walk(msg: Message, issues: list[str]) -> list[Leaf]:
    """The leaf parts of ``msg`` with their Mailpit-style PartIDs (depth-first).

    Iterative, so no nesting depth can exhaust the stack; parts deeper than
    MAX_DEPTH or past MAX_PARTS are left out and noted in ``issues``.
    """
    out: list[Leaf] = []
    stack: list[tuple[Message, str, int]] = [(msg, "", 0)]
    while stack:
        node, prefix, depth = stack.pop()
        if node.get_content_type().startswith("multipart/") and node.is_multipart():
            if depth >= MAX_DEPTH:
                _note(issues, f"parts nested deeper than {MAX_DEPTH} levels are not listed")
                continue
            payload = node.get_payload()
            children = payload if isinstance(payload, list) else []
            for n in range(len(children), 0, -1):
                child = children[n - 1]
                if isinstance(child, Message):
                    stack.append((child, f"{prefix}{n}.", depth + 1))
            continue
        if len(out) >= MAX_PARTS:
            _note(issues, f"only the first {MAX_PARTS} parts are listed")
            break
        out.append(_leaf(node, (prefix or "1.").rstrip(".")))
    return out


def _leaf(msg: Message, part_id: str) -> Leaf:
    disposition = (msg.get_content_disposition() or "").lower()
    filename = decode_words(str(msg.get_filename("") or ""), 1000).strip()
    content_id = fix_8bit(str(msg.get("Content-ID", ""))).strip().strip("<>")[:1000]
    charset = str(msg.get_content_charset() or "utf-8")
    return Leaf(
        part_id,
        msg.get_content_type(),
        filename,
        content_id,
        disposition,
        charset,
        partial(payload_bytes, msg),
    )


def payload_bytes(msg: Message) -> bytes:
    """The decoded content of a leaf part (a nested message as its source)."""
    if msg.is_multipart():  # message/rfc822 and friends
        try:
            inner = msg.get_payload(0)
            return inner.as_bytes() if isinstance(inner, Message) else b""
        except MIME_ERRORS:
            return b""
    data: Any = msg.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def problems(msg: Message) -> list[str]:
    """The names of the defects the parser noted anywhere in ``msg`` (iteratively)."""
    found: list[str] = []
    stack = [msg]
    seen = 0
    while stack and seen < MAX_PARTS * 2:
        node = stack.pop()
        seen += 1
        for defect in node.defects:
            _note(found, type(defect).__name__)
        payload = node.get_payload() if node.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
    return found


def _note(issues: list[str], issue: str) -> None:
    if issue not in issues:
        issues.append(issue)
