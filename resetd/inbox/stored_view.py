"""A message's digested view as its ``message_view`` row, and back.

What the message page and the API's message calls show, made once at ingest
(:mod:`.digest`): bodies, headers, parts, the full address lists and links.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..db import Row
from .addresses import Address
from .message_view import Attachment, MessageView, body_from_source
from .parse import Span
from .schema import LIST_ADDRESSES, Stored, dump_json


@dataclass(frozen=True)
class People:
    """A message's full address lists (each as kept at ingest)."""

    sender: Address | None
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]

    def as_json(self) -> dict[str, Any]:
        return {
            "From": self.sender.as_json() if self.sender else None,
            "To": [a.as_json() for a in self.to],
            "Cc": [a.as_json() for a in self.cc],
            "Bcc": [a.as_json() for a in self.bcc],
            "ReplyTo": [a.as_json() for a in self.reply_to],
        }


class PeopleLike(Protocol):
    """What view_row reads: a summary's address fields."""

    @property
    def sender(self) -> Address | None: ...
    @property
    def to(self) -> list[Address]: ...
    @property
    def cc(self) -> list[Address]: ...
    @property
    def bcc(self) -> list[Address]: ...
    @property
    def reply_to(self) -> list[Address]: ...


@dataclass(frozen=True)
class StoredView:
    """A message's digested view: what its page and the API's message calls show."""

    view: MessageView
    people: People
    links: list[tuple[str, str, str]]  # URL, anchor text, part


def view_row(
    view: MessageView,
    people: PeopleLike,
    links: Sequence[tuple[str, str, str]],
    spans: bool,
) -> tuple[object, ...]:
    """The message_view row after its id column.

    The address lists are left out (null) when the summary row holds them all,
    as for nearly every mail: no list longer than LIST_ADDRESSES. With
    ``spans`` (the raw source is stored where ``substr`` reads it cheaply), a
    body that reads back the same from the raw source is stored as its span
    there instead of as a second copy.
    """
    parts = [{**a.as_json(), "Inline": False} for a in view.attachments]
    parts += [{**a.as_json(), "Inline": True} for a in view.inline]
    longest = max(len(people.to), len(people.cc), len(people.bcc), len(people.reply_to))
    listed = None
    if longest > LIST_ADDRESSES:
        p = people
        listed = People(p.sender, p.to, p.cc, p.bcc, p.reply_to).as_json()
    data = {"Headers": view.headers, "Parts": parts, "People": listed, "Links": links}
    text, text_at, text_len, qp = _body(view.text, view.text_span if spans else None)
    html, html_at, html_len, html_qp = _body(view.html, view.html_span if spans else None)
    encoded = (QP_TEXT if qp else 0) | (QP_HTML if html_qp else 0)
    return text, html, dump_json(data), text_at, text_len, html_at, html_len, encoded


# Bits of the ``qp`` column: which stored span is quoted-printable.
QP_TEXT = 1
QP_HTML = 2
VIEW_COLUMNS = ("text", "html", "view_json", "text_at", "text_len", "html_at", "html_len", "qp")
# The view row with each body read from its span in the raw source, if it has one
# (substr counts from 1 and gives NULL for a NULL span).
VIEW_SELECT = (
    "SELECT v.text, v.html, v.view_json, v.qp, "
    "substr(r.raw, v.text_at + 1, v.text_len) AS text_source, "
    "substr(r.raw, v.html_at + 1, v.html_len) AS html_source "
    "FROM message_view v LEFT JOIN message_raw r ON r.id = v.id WHERE v.id = ?"
)


def _body(text: str, span: Span | None) -> tuple[str, int | None, int | None, bool]:
    if span is None:
        return text, None, None, False
    return "", span.start, span.end - span.start, span.qp


def stored_view_from_row(row: Row, message: Stored) -> StoredView:
    """The view row of ``message`` (whose summary has the short address lists)."""
    data = json.loads(row["view_json"])
    view = MessageView(
        text=_read_body(row["text"], row["text_source"], row["qp"], QP_TEXT),
        html=_read_body(row["html"], row["html_source"], row["qp"], QP_HTML),
    )
    view.headers = [(str(k), str(v)) for k, v in data["Headers"]]
    for part in data["Parts"]:
        item = Attachment.from_json(part)
        (view.inline if part["Inline"] else view.attachments).append(item)
    people = data["People"]
    if people is None:
        m = message
        stored_people = People(m.sender, m.to, m.cc, m.bcc, m.reply_to)
    else:
        sender = people["From"]
        stored_people = People(
            Address(sender["Name"], sender["Address"]) if sender else None,
            _addr_list(people["To"]),
            _addr_list(people["Cc"]),
            _addr_list(people["Bcc"]),
            _addr_list(people["ReplyTo"]),
        )
    links = [(str(u), str(t), str(p)) for u, t, p in data["Links"]]
    return StoredView(view, stored_people, links)


def _read_body(text: str, source: bytes | None, qp: int | None, bit: int) -> str:
    """The stored copy, or the body read back from its span in the raw source."""
    if source is None:
        return text
    return body_from_source(bytes(source), bool((qp or 0) & bit))


def _addr_list(items: list[dict[str, str]]) -> list[Address]:
    return [Address(a["Name"], a["Address"]) for a in items]
