"""Summary fields of a captured message: what the list, the search and the API show.

:func:`summarize` runs at ingest. It first tries :mod:`.quick`, which cuts a
well-formed message's MIME tree out with ``str.find`` instead of the stdlib's
line-by-line ``FeedParser`` (the largest cost of storing a mail); anything
it does not handle exactly as ``FeedParser`` would goes through the stdlib
parser, which also records the message's parse problem. Both routes read the
fields through the same :func:`fill_summary`, so they give the same summary.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from functools import partial

from . import quick
from .parse import (
    MIME_ERRORS,
    Address,
    addresses,
    header,
    header_map,
    html_to_text,
    is_body,
    parse_bytes,
    payload_text,
    problems,
    walk,
)

SNIPPET_LENGTH = 250
SEARCH_TEXT_LIMIT = 64 * 1024


@dataclass
class Summary:
    """What the list, the search and the API need without touching the body."""

    message_id: str = ""
    sender: Address | None = None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    subject: str = ""
    date: float | None = None
    attachments: int = 0
    snippet: str = ""
    search_text: str = ""
    problem: str = ""


def summarize(raw: bytes, rcpt_tos: list[str]) -> Summary:
    """Summary fields of ``raw``; never raises (a failure becomes ``problem``)."""
    found = quick.split(raw)
    if found is None:
        return summarize_full(raw, rcpt_tos)
    summary = Summary()
    try:
        fill_summary(summary, *found)
    except MIME_ERRORS:
        return summarize_full(raw, rcpt_tos)
    finish_summary(summary, rcpt_tos, [])
    return summary


def summarize_full(raw: bytes, rcpt_tos: list[str]) -> Summary:
    """Summary fields of ``raw`` through the stdlib parser; never raises.

    A failure or a defect the parser noted becomes ``problem``.
    """
    try:
        msg = parse_bytes(raw)
    except MIME_ERRORS as exc:
        return summarize_message(None, rcpt_tos, [f"{type(exc).__name__}: {exc}"])
    return summarize_message(msg, rcpt_tos, problems(msg))


def summarize_message(msg: Message | None, rcpt_tos: list[str], issues: list[str]) -> Summary:
    """Summary fields of a parsed message (None: nothing could be parsed)."""
    summary = Summary()
    try:
        if msg is not None:
            leaves = ((p.content_type, is_body(p), partial(payload_text, p)) for p in walk(msg))
            fill_summary(summary, header_map(msg), leaves)
    except MIME_ERRORS as exc:
        issues = [*issues, f"{type(exc).__name__}: {exc}"]
    finish_summary(summary, rcpt_tos, issues)
    return summary


def fill_summary(summary: Summary, found: quick.Headers, leaves: Iterable[quick.Leaf]) -> None:
    """Header fields from ``found`` (see header_map), then snippet, text, attachments."""
    summary.message_id = header(found, "message-id").strip().strip("<>")
    senders = addresses(found, "from")
    summary.sender = senders[0] if senders else None
    summary.to = addresses(found, "to")
    summary.cc = addresses(found, "cc")
    summary.reply_to = addresses(found, "reply-to")
    summary.subject = header(found, "subject")
    summary.date = _date(header(found, "date"))
    text = ""
    html: Callable[[], str] | None = None  # decoded only when there is no text
    for content_type, body, decoded in leaves:
        if body:
            if content_type == "text/plain" and not text:
                text = decoded()
            elif content_type == "text/html" and html is None:
                html = decoded
        else:
            summary.attachments += 1
    body_text = text if text.strip() else html_to_text(html() if html else "")
    # str.split() splits on what ``\s`` matches, and several times faster.
    summary.snippet = " ".join(body_text[: SNIPPET_LENGTH * 4].split())[:SNIPPET_LENGTH]
    summary.search_text = body_text[:SEARCH_TEXT_LIMIT]


def finish_summary(summary: Summary, rcpt_tos: list[str], issues: list[str]) -> None:
    """Envelope-only recipients become Bcc; ``issues`` become the parse problem."""
    shown = {a.address.lower() for a in summary.to + summary.cc}
    summary.bcc = [Address("", r) for r in rcpt_tos if r.lower() not in shown]
    summary.problem = ", ".join(issues)


def _date(value: str) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
