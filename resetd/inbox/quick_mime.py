"""A well-formed message's MIME tree cut out with ``str.find``, for the digest at ingest.

``FeedParser`` reads a message one line at a time in Python. Here header
blocks are checked and split by regular expressions with possessive
quantifiers (linear whatever the input) and multipart bodies are cut at
their boundary lines, giving the top-level headers and the leaf parts,
decoded only when asked.

The result is the one the stdlib would give, or nothing: whatever this does
not handle exactly as ``FeedParser`` and ``Message`` would (a defect the
parser would record, a bare CR, ``message/*`` parts, a Unix ``From`` line,
parameters in RFC 2231 or with comments, non-ASCII structural headers), and
anything past the limits :func:`split` is given, makes it return None, and
the caller uses the stdlib parser in the parser process.
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Mapping, Sequence
from email.message import Message
from email.utils import collapse_rfc2231_value, unquote
from functools import partial
from typing import NamedTuple

from .headertext import decode_words, fix_8bit
from .parse import Leaf, Span

Headers = Mapping[str, Sequence[str]]  # lower-cased name → raw values
HeaderList = Sequence[tuple[str, str]]  # (name, raw value) in order

MAX_DEPTH = 8
_NAME = r"[\041-\071\073-\176]++"  # FeedParser's header-name characters
_HEADER_BLOCK = re.compile(rf"(?:{_NAME}:[^\n]*+\n(?:[ \t][^\n]*+\n)*+)*+")
_FIELD = re.compile(rf"^({_NAME}):[ \t]*+([^\n]*+\n(?:[ \t][^\n]*+\n)*+)", re.MULTILINE)
_WS = "[ \t\r\n]*+"
_PARAMS = re.compile(
    rf'[^;"\\=]*+(?:;{_WS}[A-Za-z0-9!#$%&\'+.^_`{{|}}~-]++{_WS}={_WS}(?:"[^"\\]*+"|[^;"\\\s]*+){_WS})*+'
)
_PARAM = re.compile(rf';{_WS}([^\s=]++){_WS}={_WS}("[^"]*+"|[^;\s]*+)')
_UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")
_BARE_CR = re.compile(r"\r(?!\n)")  # one character and a look-ahead: linear


class _Unsupported(Exception):
    """The message needs the stdlib parser."""


class Limits(NamedTuple):
    """How much :func:`split` takes on before it hands the message to the stdlib."""

    header_block: int  # characters in any one header block
    leaves: int  # leaf parts
    boundaries: int  # occurrences of a multipart's boundary string looked at
    words: int  # encoded words in a part's file name


def split(raw: bytes, limits: Limits) -> tuple[HeaderList, list[Leaf]] | None:
    """The top-level headers and the leaf parts of ``raw``, or None (use the stdlib)."""
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser reads it
    if "\r" in text and _BARE_CR.search(text):
        return None  # bare CR line endings
    leaves: list[Leaf] = []
    try:
        found = _node(raw, text, 0, len(text), "", 0, leaves, limits)
    except _Unsupported:
        return None
    return found, leaves


def _node(
    raw: bytes,
    text: str,
    start: int,
    end: int,
    prefix: str,
    depth: int,
    leaves: list[Leaf],
    limits: Limits,
) -> HeaderList:
    block, body_at = _headers(text, start, end, limits.header_block)
    fields, found, ctype = _read_block(block)
    if ctype.startswith("multipart/"):
        if depth >= MAX_DEPTH:
            raise _Unsupported
        separator = _separator(found, ctype)
        for n, (part_start, part_end) in enumerate(
            _parts(text, body_at, end, separator, limits.boundaries), 1
        ):
            _node(raw, text, part_start, part_end, f"{prefix}{n}.", depth + 1, leaves, limits)
    elif ctype.startswith("message/"):
        raise _Unsupported
    else:
        if len(leaves) >= limits.leaves:
            raise _Unsupported
        part_id = (prefix or "1.").rstrip(".")
        leaves.append(_leaf(raw, text, block, part_id, body_at, end, limits.words))
    return fields


def _separator(found: Headers, ctype: str) -> str:
    """The boundary line of a multipart (raises _Unsupported when it has none usable)."""
    boundary = _param(found, "content-type", "boundary")
    cte = _first(found, "content-transfer-encoding", "8bit").lower()
    if (
        not boundary
        or cte not in ("7bit", "8bit", "binary")
        or ctype == "multipart/digest"  # its parts default to message/rfc822
    ):
        raise _Unsupported
    return "--" + collapse_rfc2231_value(boundary).rstrip()


def _headers(text: str, start: int, end: int, limit: int) -> tuple[str, int]:
    """The header block at ``start``, and where the body after its blank line starts."""
    if start >= end:
        return "", end
    if text.startswith("\n", start, end):
        return "", start + 1
    if text.startswith("\r\n", start, end):
        return "", start + 2
    stop = min(end, start + limit + 3)  # a block past the limit is not looked at
    # The first blank line, LF or CRLF: each search stops where the other one's
    # match would win, so the window is scanned once, not once per line ending.
    crlf = text.find("\n\r\n", start, stop)
    lf = text.find("\n\n", start, stop if crlf < 0 else crlf + 2)
    if lf < 0 and crlf < 0:
        if stop < end:
            raise _Unsupported
        block, body_at = text[start:end], end
        if not block.endswith("\n"):
            block += "\n"
    elif crlf < 0 or 0 <= lf < crlf:
        block, body_at = text[start : lf + 1], lf + 2
    else:
        block, body_at = text[start : crlf + 1], crlf + 3
    if len(block) > limit:
        raise _Unsupported
    return block, body_at


class _Block(NamedTuple):
    fields: tuple[tuple[str, str], ...]
    found: Headers
    ctype: str


@functools.lru_cache(maxsize=128)
def _read_block(block: str) -> _Block:
    """The fields of a header block, by name, and its content type.

    Cached: the part headers of an app's mail are the same from one mail to
    the next (its templates). Raises _Unsupported, which is never cached.
    """
    if not _HEADER_BLOCK.fullmatch(block):
        raise _Unsupported  # MissingHeaderBodySeparator, a continuation first, "From "…
    # compat32's header_source_parse: folding stays in the value.
    fields = tuple(
        [(name, fix_8bit(value.rstrip("\r\n"))) for name, value in _FIELD.findall(block)]
    )
    found: dict[str, tuple[str, ...]] = {}
    for name, value in fields:
        key = name.lower()
        found[key] = (*found.get(key, ()), value)
    return _Block(fields, found, _content_type(found))


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


def _params(found: Headers, header: str) -> Mapping[str, str] | None:
    """The parameters of ``header`` as ``Message.get_param`` reads each of them
    (the first of a name wins; a bare first attribute is ""), or None without it."""
    if header not in found:
        return None
    return _read_params(_first(found, header, ""))


@functools.lru_cache(maxsize=128)
def _read_params(value: str) -> Mapping[str, str]:
    """The parameters in a header value (cached, as _read_block is)."""
    if not _PARAMS.fullmatch(value):
        raise _Unsupported
    raw: dict[str, str] = {}
    for key, raw_value in _PARAM.findall(value):
        raw.setdefault(key.lower(), raw_value)
    params = {key: unquote(quoted) for key, quoted in raw.items()}
    params[value.partition(";")[0].strip().lower()] = ""
    return params


def _param(found: Headers, header: str, name: str) -> str | None:
    """``Message.get_param(name, header=header)`` for plain parameter lists."""
    params = _params(found, header)
    return None if params is None else params.get(name)


def _parts(text: str, start: int, end: int, separator: str, most: int) -> list[tuple[int, int]]:
    """The (start, end) of each part between ``separator`` lines, up to the close line.

    As in RFC 2046 and FeedParser, the line break before a boundary belongs
    to the boundary. Looks at ``most`` occurrences of ``separator`` at most.
    """
    parts: list[tuple[int, int]] = []
    part_at = -1  # where the current part began (-1: still in the preamble)
    pos = start
    for _ in range(most):
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
    raise _Unsupported  # more boundary-like strings than this route looks at


def _before_eol(text: str, start: int, end: int) -> int:
    if text.startswith("\r\n", end - 2, end) and end - 2 >= start:
        return end - 2
    return end - 1 if text.startswith("\n", end - 1, end) else end


def _leaf(
    raw: bytes, text: str, block: str, part_id: str, start: int, end: int, words: int
) -> Leaf:
    about = _leaf_headers(block, words)
    data = partial(_decoded, raw, text, about.cte, start, end)
    span = Span(start, end, about.qp) if about.spans else None
    return Leaf(
        part_id, about.ctype, about.filename, about.content_id, about.disposition,
        about.charset, data, span,
    )  # fmt: skip


class _LeafHeaders(NamedTuple):
    """What a leaf's header block says about it."""

    ctype: str
    filename: str
    content_id: str
    disposition: str
    charset: str
    cte: str
    spans: bool  # its transfer encoding is decoded by C code alone (see Span)
    qp: bool


@functools.lru_cache(maxsize=128)
def _leaf_headers(block: str, words: int) -> _LeafHeaders:
    """A leaf's header block read (cached as _read_block is: an app's parts repeat)."""
    _, found, ctype = _read_block(block)
    disposition = _first(found, "content-disposition", "").partition(";")[0].strip().lower()
    type_params = _params(found, "content-type") or {}
    filename = (_params(found, "content-disposition") or {}).get("filename")
    if filename is None:
        filename = type_params.get("name")
    if filename and filename.count("=?") > words:
        raise _Unsupported  # each word may name a charset to look up
    name = decode_words(collapse_rfc2231_value(filename), 1000).strip() if filename else ""
    content_ids = found.get("content-id")
    content_id = content_ids[0].strip().strip("<>")[:1000] if content_ids else ""
    cte = _first(found, "content-transfer-encoding", "")
    charset = (type_params.get("charset") or "utf-8").lower()
    encoding = cte.lower()
    spans = encoding != "base64" and encoding not in _UUENCODE
    qp = encoding == "quoted-printable"
    return _LeafHeaders(ctype, name, content_id, disposition, charset, cte, spans, qp)


def _decoded(raw: bytes, text: str, cte: str, start: int, end: int) -> bytes:
    """``parse.payload_bytes`` of the part at ``start:end``."""
    data = raw[start:end]
    if cte.lower() == "quoted-printable":
        return binascii.a2b_qp(data)  # what quopri.decodestring uses
    if cte.lower() == "base64" or cte.lower() in _UUENCODE:
        msg = Message()  # the stdlib's own lenient decoding
        msg.set_raw("Content-Transfer-Encoding", cte)
        msg.set_payload(text[start:end])
        decoded = msg.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else b""
    return data
