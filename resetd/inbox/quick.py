"""A well-formed message's MIME tree cut out with ``str.find``, for the summary at ingest.

``FeedParser`` reads a message one line at a time in Python. Here header
blocks are checked and split by regular expressions and multipart bodies are
cut at their boundary lines, giving the header map (as ``header_map``) and
the leaf parts the summary needs, decoded only when asked.

The result is the one the stdlib would give, or nothing: whatever this does
not handle exactly as ``FeedParser`` and ``Message`` would (a defect the
parser would record, a bare CR, ``message/*`` parts, a Unix ``From`` line,
parameters in RFC 2231 or with comments, non-ASCII structural headers)
makes :func:`split` return None, and the caller uses the stdlib parser.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from email.message import Message
from email.utils import collapse_rfc2231_value, unquote
from functools import partial

from .parse import decode_words, fix_8bit

Headers = dict[str, list[str]]  # lower-cased name → values, as parse.header_map gives
# A leaf part as the summary sees it: content type, whether it is a body
# (see parse.is_body) and how to get its decoded text.
Leaf = tuple[str, bool, Callable[[], str]]

MAX_DEPTH = 8
_NAME = r"[\041-\071\073-\176]+"  # FeedParser's header-name characters
_HEADER_BLOCK = re.compile(rf"(?:{_NAME}:[^\n]*\n(?:[ \t][^\n]*\n)*)*")
_FIELD = re.compile(rf"^({_NAME}):[ \t]*([^\n]*\n(?:[ \t][^\n]*\n)*)", re.MULTILINE)
_WS = "[ \t\r\n]*"
_PARAMS = re.compile(
    rf'[^;"\\=]*(?:;{_WS}[A-Za-z0-9!#$%&\'+.^_`{{|}}~-]+{_WS}={_WS}(?:"[^"\\]*"|[^;"\\\s]*){_WS})*'
)
_PARAM = re.compile(rf';{_WS}([^\s=]+){_WS}={_WS}("[^"]*"|[^;\s]*)')
_UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")


class _Unsupported(Exception):
    """The message needs the stdlib parser."""


def split(raw: bytes) -> tuple[Headers, list[Leaf]] | None:
    """The top-level headers and the leaf parts of ``raw``, or None (use the stdlib)."""
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser reads it
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return None  # bare CR line endings
    leaves: list[Leaf] = []
    try:
        found = _node(raw, text, 0, len(text), 0, leaves)
    except _Unsupported:
        return None
    return found, leaves


def _node(raw: bytes, text: str, start: int, end: int, depth: int, leaves: list[Leaf]) -> Headers:
    found, body_at = _headers(text, start, end)
    ctype = _content_type(found)
    if ctype.startswith("multipart/"):
        boundary = _param(found, "content-type", "boundary")
        cte = _first(found, "content-transfer-encoding", "8bit").lower()
        if (
            not boundary
            or cte not in ("7bit", "8bit", "binary")
            or ctype == "multipart/digest"  # its parts default to message/rfc822
            or depth >= MAX_DEPTH
        ):
            raise _Unsupported
        separator = "--" + collapse_rfc2231_value(boundary).rstrip()
        for part_start, part_end in _parts(text, body_at, end, separator):
            _node(raw, text, part_start, part_end, depth + 1, leaves)
    elif ctype.startswith("message/"):
        raise _Unsupported
    else:
        leaves.append(_leaf(raw, text, found, ctype, body_at, end))
    return found


def _headers(text: str, start: int, end: int) -> tuple[Headers, int]:
    """The header block at ``start``, and where the body after its blank line starts."""
    if start >= end:
        return {}, end
    if text.startswith("\n", start, end):
        return {}, start + 1
    if text.startswith("\r\n", start, end):
        return {}, start + 2
    lf, crlf = text.find("\n\n", start, end), text.find("\n\r\n", start, end)
    if lf < 0 and crlf < 0:
        block, body_at = text[start:end], end
        if not block.endswith("\n"):
            block += "\n"
    elif crlf < 0 or 0 <= lf < crlf:
        block, body_at = text[start : lf + 1], lf + 2
    else:
        block, body_at = text[start : crlf + 1], crlf + 3
    if not _HEADER_BLOCK.fullmatch(block):
        raise _Unsupported  # MissingHeaderBodySeparator, a continuation first, "From "…
    found: Headers = {}
    for name, value in _FIELD.findall(block):
        # compat32's header_source_parse: folding stays in the value.
        found.setdefault(name.lower(), []).append(fix_8bit(value.rstrip("\r\n")))
    return found, body_at


def _first(found: Headers, name: str, default: str) -> str:
    values = found.get(name)
    if not values:
        return default
    if not values[0].isascii():
        raise _Unsupported
    return values[0]


def _content_type(found: Headers) -> str:
    """``Message.get_content_type()``: text/plain when missing or unusable."""
    ctype = _first(found, "content-type", "").partition(";")[0].strip().lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


def _param(found: Headers, header: str, name: str) -> str | None:
    """``Message.get_param(name, header=header)`` for plain parameter lists."""
    if header not in found:
        return None
    value = _first(found, header, "")
    if not _PARAMS.fullmatch(value):
        raise _Unsupported
    if value.partition(";")[0].strip().lower() == name:
        return ""  # a bare attribute in the first position
    for key, raw_value in _PARAM.findall(value):
        if key.lower() == name:
            return unquote(raw_value)
    return None


def _parts(text: str, start: int, end: int, separator: str) -> list[tuple[int, int]]:
    """The (start, end) of each part between ``separator`` lines, up to the close line.

    As in RFC 2046 and FeedParser, the line break before a boundary belongs
    to the boundary.
    """
    parts: list[tuple[int, int]] = []
    part_at = -1  # where the current part began (-1: still in the preamble)
    pos = start
    while True:
        at = text.find(separator, pos, end)
        if at < 0:
            raise _Unsupported  # StartBoundaryNotFound / CloseBoundaryNotFound
        pos = at + len(separator)
        if at != start and text[at - 1] != "\n":
            continue  # not at the start of a line
        closing = text.startswith("--", pos, end)
        line_end = text.find("\n", pos, end)
        rest = text[pos + 2 if closing else pos : end if line_end < 0 else line_end]
        if rest.rstrip("\r").strip(" \t"):
            continue  # "--boundary" and more on the line: not a boundary line
        if part_at >= 0:
            if at == part_at:
                raise _Unsupported  # boundary lines in a row: FeedParser merges them oddly
            parts.append((part_at, _before_eol(text, part_at, at)))
        if closing:
            if part_at < 0:
                raise _Unsupported  # a close line before any part
            return parts
        if line_end < 0:
            raise _Unsupported  # CloseBoundaryNotFound
        part_at = pos = line_end + 1


def _before_eol(text: str, start: int, end: int) -> int:
    if text.startswith("\r\n", end - 2, end) and end - 2 >= start:
        return end - 2
    return end - 1 if text.startswith("\n", end - 1, end) else end


def _leaf(raw: bytes, text: str, found: Headers, ctype: str, start: int, end: int) -> Leaf:
    body = False
    if ctype in ("text/plain", "text/html"):
        disposition = _first(found, "content-disposition", "").partition(";")[0]
        if disposition.strip().lower() != "attachment":
            filename = _param(found, "content-disposition", "filename")
            if filename is None:
                filename = _param(found, "content-type", "name")
            body = not decode_words(collapse_rfc2231_value(filename).strip() if filename else "")
    cte = _first(found, "content-transfer-encoding", "")
    charset = (_param(found, "content-type", "charset") or "utf-8").lower()
    return ctype, body, partial(_decoded, raw, text, cte, charset, start, end)


def _decoded(raw: bytes, text: str, cte: str, charset: str, start: int, end: int) -> str:
    """``parse.payload_text`` of the part at ``start:end``."""
    data = raw[start:end]
    if cte.lower() == "quoted-printable":
        data = binascii.a2b_qp(data)  # what quopri.decodestring uses
    elif cte.lower() == "base64" or cte.lower() in _UUENCODE:
        msg = Message()  # the stdlib's own lenient decoding
        msg.set_raw("Content-Transfer-Encoding", cte)
        msg.set_payload(text[start:end])
        decoded = msg.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")
