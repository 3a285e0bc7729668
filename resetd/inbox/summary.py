"""Summary fields of a captured message: what the list, the search and the API show.

Read from the top-level headers and the leaf parts, whichever route found
them (:mod:`.digest`). Every scanner here is linear in its input and every
field is bounded: the subject and IDs are cut, an address header is read up
to ADDRESS_SCAN characters and keeps its first ADDRESSES_KEPT addresses
(the count covers all it read), so no header can make a row huge.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable
from dataclasses import dataclass, field

from .addresses import Address, parse_addresses
from .headertext import decode_words, valid
from .tags import X_TAGS_SCAN, plus_tags, unique_tags, x_tags

SNIPPET_LENGTH = 250
SEARCH_TEXT_LIMIT = 64 * 1024
SUBJECT_LIMIT = 2000
ID_LIMIT = 1000
ADDRESS_SCAN = 1024 * 1024
# Addresses kept per header (and Bcc from the envelope): RFC 5321 asks a server
# to take at least 100 recipients; mail to more than this is not a dev inbox's case.
ADDRESSES_KEPT = 1000

Headers = dict[str, list[str]]  # lower-cased name → raw values, in order


@dataclass
class Summary:
    """What the list, the search and the API need without touching the body."""

    message_id: str = ""
    sender: Address | None = None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    recipients: int = 0  # To + Cc + Bcc, counting those not kept
    subject: str = ""
    date: float | None = None
    attachments: int = 0
    inline: int = 0  # parts with a Content-ID that are not attachments
    tags: list[str] = field(default_factory=list)  # cleaned, sorted (tags.py)
    snippet: str = ""
    search_text: str = ""
    problem: str = ""


def header_map(headers: Iterable[tuple[str, str]]) -> Headers:
    found: Headers = {}
    for name, value in headers:
        found.setdefault(name.lower(), []).append(value)
    return found


def first(found: Headers, name: str, limit: int) -> str:
    """The first ``name`` header, decoded, from at most ``limit`` raw characters."""
    values = found.get(name)
    return decode_words(values[0], limit) if values else ""


def addresses(found: Headers, name: str) -> tuple[list[Address], int]:
    """The kept addresses of every ``name`` header, and how many they hold in all."""
    kept: list[Address] = []
    count = 0
    if name not in found:
        return kept, count  # most Cc and Reply-To
    for value in found[name]:
        more, n = parse_addresses(value[:ADDRESS_SCAN], ADDRESSES_KEPT - len(kept))
        kept += more
        count += n
    return kept, count


def fill_headers(summary: Summary, found: Headers) -> int:
    """The header fields of ``summary``; returns how many To and Cc addresses there are."""
    summary.message_id = first(found, "message-id", ID_LIMIT).strip().strip("<>")
    senders, _ = addresses(found, "from")
    summary.sender = senders[0] if senders else None
    summary.to, to_count = addresses(found, "to")
    summary.cc, cc_count = addresses(found, "cc")
    summary.reply_to, _ = addresses(found, "reply-to")
    summary.subject = first(found, "subject", SUBJECT_LIMIT)
    summary.date = _date(first(found, "date", 200))
    summary.tags = x_tags(first(found, "x-tags", X_TAGS_SCAN))
    return to_count + cc_count


def fill_body(summary: Summary, body_text: str) -> None:
    # str.split() splits on what ``\s`` matches, and several times faster.
    summary.snippet = " ".join(body_text[: SNIPPET_LENGTH * 4].split())[:SNIPPET_LENGTH]
    summary.search_text = body_text[:SEARCH_TEXT_LIMIT]


def finish(summary: Summary, shown: int, rcpt_tos: list[str], issues: list[str]) -> None:
    """Envelope-only recipients become Bcc; ``issues`` become the parse problem;
    X-Tags (read by fill_headers) and plus-addresses become the tags."""
    seen = {a.address.lower() for a in summary.to + summary.cc}
    bcc = [r for r in rcpt_tos if r.lower() not in seen]
    summary.bcc = [Address("", valid(r)) for r in bcc[:ADDRESSES_KEPT]]
    summary.recipients = shown + len(bcc)
    summary.problem = valid(", ".join(issues))[:ID_LIMIT]
    people = [*([summary.sender] if summary.sender else []), *summary.to, *summary.cc, *summary.bcc]
    plus = [tag for a in people if "+" in a.address for tag in plus_tags(a.address)]
    summary.tags = unique_tags([*summary.tags, *plus])


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
