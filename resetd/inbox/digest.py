"""What a captured mail becomes at ingest: its summary, its view and its links, once.

Three routes give the same :class:`Digest` shape:

- :func:`quick_digest`, on the event loop, for the common case: a well-formed
  message of up to LOOP_SIZE bytes that :mod:`.quick_mime` can cut with
  ``str.find``, with small header blocks and a modest number of tags. Every
  scanner is linear and these limits bound its input, so it costs at most a
  few milliseconds whatever the mail holds; past any limit it returns None.
- :func:`full_digest`, in the parser process (:mod:`.parser`): the quick cut
  with larger limits, else the stdlib parser, whose defects become the parse
  problem. What the stdlib cannot parse at all (nesting deep enough for a
  RecursionError, say) is stored as received.
- :func:`unparsed_digest`: the mail as received, its top-level headers read
  by the same linear scanners, for a mail the parser process gave up on
  (time limit, crash) or could not parse.

Every text in a digest is valid Unicode and bounded in size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import quick_mime
from .headertext import codec, decode_words, fix_8bit, valid
from .html_scan import anchors, html_to_text
from .message_view import HEADER_LIMIT, HEADERS_TOTAL, MAX_HEADERS, MessageView, add_part, cut
from .parse import (
    MAX_PARTS,
    MIME_ERRORS,
    Leaf,
    Span,
    decode_text,
    header_list,
    parse_bytes,
    problems,
    walk,
)
from .summary import (
    SEARCH_TEXT_LIMIT,
    Summary,
    fill_body,
    fill_headers,
    finish,
    header_map,
)

# The loop route's limits; a mail past any of them goes to the parser process.
LOOP_SIZE = 256 * 1024
LOOP_LIMITS = quick_mime.Limits(header_block=8 * 1024, leaves=64, boundaries=256, words=10)
# Things each costing a step of Python work: "&" in an HTML body, "://" in a text
# body, and a tenth of it for encoded words in the headers. A tag costs up to ten
# steps (a link: its attributes, its text).
LOOP_STEPS = 4000
LOOP_TAGS = 1000
PROCESS_LIMITS = quick_mime.Limits(
    header_block=1024 * 1024, leaves=MAX_PARTS, boundaries=100_000, words=200
)
# How much of an unparsed mail is read (on the loop, when the parser process
# gave up): its top-level headers, and the start of its body as text.
UNPARSED_HEADERS = 16 * 1024
UNPARSED_TEXT = 64 * 1024
MAX_LINKS = 500
_URL_REST = re.compile(r"""[^\s<>"'`]++""")
_TRAILING = ".,;:!?)]}'\""
_FIELD = re.compile(r"^([\041-\071\073-\176]++):[ \t]*+([^\n]*+(?:\n[ \t][^\n]*+)*+)", re.M)

Link = tuple[str, str, str]  # URL, anchor text, part ("html" or "text")


@dataclass
class Digest:
    summary: Summary
    view: MessageView = field(default_factory=MessageView)
    links: list[Link] = field(default_factory=list)


class _OverBudget(Exception):
    """The loop route's limits do not cover this mail."""


def quick_digest(raw: bytes, rcpt_tos: list[str]) -> Digest | None:
    """The digest of a small well-formed mail, cheap enough for the loop; else None."""
    if len(raw) > LOOP_SIZE:
        return None
    found = quick_mime.split(raw, LOOP_LIMITS)
    if found is None:
        return None
    try:
        return _build(*found, rcpt_tos, [], on_loop=True)
    except _OverBudget:
        return None
    except MIME_ERRORS:
        return None


def full_digest(raw: bytes, rcpt_tos: list[str]) -> Digest:
    """The digest of any mail (in the parser process); never raises for bad input."""
    found = quick_mime.split(raw, PROCESS_LIMITS)
    if found is not None:
        try:
            return _build(*found, rcpt_tos, [])
        except MIME_ERRORS:
            pass  # the stdlib's reading, and its defects
    return stdlib_digest(raw, rcpt_tos)


def stdlib_digest(raw: bytes, rcpt_tos: list[str]) -> Digest:
    """The digest through the stdlib parser alone; never raises for bad input."""
    try:
        msg = parse_bytes(raw)
        issues = problems(msg)
        leaves = walk(msg, issues)
        return _build(header_list(msg), leaves, rcpt_tos, issues)
    except MIME_ERRORS as exc:
        return unparsed_digest(raw, rcpt_tos, describe(exc))


def unparsed_digest(raw: bytes, rcpt_tos: list[str], problem: str) -> Digest:
    """``raw`` as received: its top-level headers, the start of its body as text."""
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    ends = [(at, at + size) for at, size in ((crlf, 4), (lf, 2)) if at >= 0]
    block_end, body_at = min(ends) if ends else (len(raw), len(raw))
    block = raw[: min(block_end, UNPARSED_HEADERS)].decode("ascii", "surrogateescape")
    headers = [
        (name, fix_8bit(value)) for name, value in _FIELD.findall(block.replace("\r\n", "\n"))
    ]
    body = raw[body_at : body_at + UNPARSED_TEXT]
    text = valid(body.decode("utf-8", "replace"))
    digest = Digest(Summary())
    shown = fill_headers(digest.summary, header_map(headers))
    _view_headers(digest.view, headers)
    digest.view.text = text
    fill_body(digest.summary, text)
    digest.links = extract_links(text, "")
    finish(digest.summary, shown, rcpt_tos, [problem])
    return digest


def describe(exc: BaseException) -> str:
    """A parse problem from an exception: its type and the start of its message."""
    return valid(f"{type(exc).__name__}: {exc}")[:300]


def _build(
    headers: quick_mime.HeaderList,
    leaves: Sequence[Leaf],
    rcpt_tos: list[str],
    issues: list[str],
    on_loop: bool = False,
) -> Digest:
    """The digest from ``headers`` and ``leaves``; on the loop, raises _OverBudget
    when the mail holds more than LOOP_STEPS of any kind of step."""
    if on_loop and sum([value.count("=?") for _, value in headers]) > LOOP_STEPS // 10:
        raise _OverBudget
    digest = Digest(Summary())
    summary, view = digest.summary, digest.view
    shown = fill_headers(summary, header_map(headers))
    _view_headers(view, headers)
    text_taken = html_taken = False
    for leaf in leaves:
        data = _data(leaf, issues)
        if leaf.is_body:
            if leaf.content_type == "text/plain" and not text_taken:
                view.text = decode_text(data, leaf.charset)
                view.text_span = _source_span(leaf, view.text)
                text_taken = bool(view.text)
                continue
            if leaf.content_type == "text/html" and not html_taken:
                view.html = decode_text(data, leaf.charset)
                view.html_span = _source_span(leaf, view.html)
                html_taken = bool(view.html)
                continue
        add_part(view, leaf, data)
    summary.attachments, summary.inline = len(view.attachments), len(view.inline)
    if on_loop and (view.html.count("<") > LOOP_TAGS or view.html.count("&") > LOOP_STEPS):
        raise _OverBudget
    body_text = view.text if view.text.strip() else html_to_text(view.html, SEARCH_TEXT_LIMIT)
    fill_body(summary, body_text)
    digest.links = extract_links(view.text, view.html, LOOP_STEPS if on_loop else 0)
    view.text, view.html = cut(view.text), cut(view.html)
    finish(summary, shown, rcpt_tos, issues)
    return digest


def _source_span(leaf: Leaf, text: str) -> Span | None:
    """Where ``leaf`` lies in the raw source, when reading it back from there with
    :func:`~.message_view.body_from_source` gives ``text``; else None.

    That is UTF-8 (or ASCII) that decoded without a replacement: then the strict
    decode on read is the same as the lenient one here, and ``valid`` changes
    nothing. Any other charset, or a replacement, keeps the decoded copy.
    """
    if leaf.span is None:
        return None
    name = codec(leaf.charset or "utf-8") or "utf-8"
    if name == "ascii":
        return leaf.span if text.isascii() else None
    return leaf.span if name == "utf-8" and "\ufffd" not in text else None


def _view_headers(view: MessageView, headers: quick_mime.HeaderList) -> None:
    """The headers to show: at most MAX_HEADERS, HEADER_LIMIT characters each,
    HEADERS_TOTAL in all; a last line says how many more the raw source has."""
    total = 0
    for n, (name, value) in enumerate(headers):
        if n >= MAX_HEADERS or total > HEADERS_TOTAL:
            view.headers.append(("…", f"{len(headers) - n} more in the raw source"))
            break
        if value.isascii() and "=?" not in value and "\n" not in value:
            shown = value[:HEADER_LIMIT]  # nearly every header: nothing to decode
        else:
            shown = decode_words(value, HEADER_LIMIT)
        total += len(shown)
        view.headers.append((name[:200] if name.isascii() else valid(name)[:200], shown))


def _data(leaf: Leaf, issues: list[str]) -> bytes:
    try:
        data = leaf.data()
    except MIME_ERRORS as exc:
        issues.append(describe(exc))
        return b""
    return data if isinstance(data, bytes) else b""


def extract_links(text: str, html: str, most_tries: int = 0) -> list[Link]:
    """Every distinct (URL, part) in the mail, HTML first, in document order, at most
    MAX_LINKS. With ``most_tries``, raises _OverBudget past that many ``://`` in ``text``."""
    links: list[Link] = []
    seen: set[tuple[str, str]] = set()

    def add(url: str, anchor: str, part: str) -> None:
        if (url, part) not in seen and len(links) < MAX_LINKS:
            seen.add((url, part))
            links.append((url, anchor, part))

    for href, anchor in anchors(html, MAX_LINKS * 4) if html else ():
        if href.lower().startswith(("http://", "https://", "mailto:")):
            add(href, anchor, "html")
    for url in _text_urls(text, most_tries):
        if len(links) >= MAX_LINKS:
            break
        add(url.rstrip(_TRAILING), "", "text")
    return links


def _text_urls(text: str, most_tries: int) -> list[str]:
    """The ``http(s)://`` URLs in ``text``, found from each ``://`` (a case-insensitive
    regex for the scheme would be tried at every position)."""
    urls: list[str] = []
    at = text.find("://")
    tries = 0
    while at >= 0 and len(urls) < MAX_LINKS:
        tries += 1
        if most_tries and tries > most_tries:
            raise _OverBudget
        scheme = text[max(0, at - 5) : at].lower()
        start = at - 5 if scheme == "https" else at - 4 if scheme.endswith("http") else -1
        rest = _URL_REST.match(text, at + 3)
        end = rest.end() if rest else at + 3
        if start >= 0 and rest:
            urls.append(text[start:end])
        at = text.find("://", end)
    return urls
