"""One message opened: bodies, headers, inline parts and attachments.

Built once at ingest (:mod:`.digest`) and stored, so opening a message reads
a row; the pages and the API never parse. Every piece is bounded: bodies
are kept up to BODY_LIMIT characters, headers up to MAX_HEADERS of
HEADER_LIMIT characters each and HEADERS_TOTAL in all; the raw source and
the .eml download have everything.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .headertext import valid
from .parse import MIME_ERRORS, Leaf, Span, parse_bytes, walk

BODY_LIMIT = 1024 * 1024
CUT_NOTE = "\n\n[… cut here: the rest is in the raw source]"
MAX_HEADERS = 500
# As long as the longest line the sink takes (smtp_data.LINE_LENGTH_LIMIT), so a
# header on one line shows whole: a To: of thousands of addresses is real mail.
HEADER_LIMIT = 64 * 1024
HEADERS_TOTAL = 256 * 1024
_CID = re.compile(r"""cid:([^"'\s)>]+)""", re.IGNORECASE)
# Inside the srcdoc document, on top of the page's own CSP: no script, ever.
IFRAME_CSP = "script-src 'none'; object-src 'none'; form-action 'none'; base-uri 'none'"


@dataclass(frozen=True)
class Attachment:
    part_id: str
    filename: str
    content_type: str
    content_id: str
    size: int
    # Hex MD5, SHA1 and SHA256 of the decoded content, as Mailpit gives them
    # ("" in parts stored before they were computed).
    checksums: tuple[str, str, str] = ("", "", "")

    def as_json(self) -> dict[str, object]:
        md5, sha1, sha256 = self.checksums
        return {
            "PartID": self.part_id,
            "FileName": self.filename,
            "ContentType": self.content_type,
            "ContentID": self.content_id,
            "Size": self.size,
            "Checksums": {"MD5": md5, "SHA1": sha1, "SHA256": sha256},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        sums = data.get("Checksums") or {}
        return cls(
            str(data["PartID"]),
            str(data["FileName"]),
            str(data["ContentType"]),
            str(data["ContentID"]),
            int(data["Size"]),
            (str(sums.get("MD5", "")), str(sums.get("SHA1", "")), str(sums.get("SHA256", ""))),
        )


@dataclass
class MessageView:
    text: str = ""
    html: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    inline: list[Attachment] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    # Where text and html lie in the raw source when reading them back from it gives
    # the same string (see :func:`body_from_source`); None: only the copy above has it.
    text_span: Span | None = None
    html_span: Span | None = None


def cut(text: str, limit: int = BODY_LIMIT) -> str:
    """``text``, or its first ``limit`` characters and a note saying so."""
    return text if len(text) <= limit else text[:limit] + CUT_NOTE


def body_from_source(content: bytes, qp: bool) -> str:
    """A body whose span was stored instead of its text, from its bytes in the raw source.

    At ingest the span is kept only when this gives the very text the digest
    made (UTF-8 or ASCII that decodes cleanly, after quoted-printable at most):
    a C-speed decode bounded by the stored span, not a parse.
    """
    data = binascii.a2b_qp(content) if qp else content
    return cut(valid(data.decode("utf-8", "replace")))


def checksums(data: bytes) -> tuple[str, str, str]:
    """Hex MD5, SHA1 and SHA256 of ``data`` (hashlib's C code, linear)."""
    return (
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
        hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )


def add_part(view: MessageView, leaf: Leaf, data: bytes) -> None:
    """List ``leaf`` as an inline part (a Content-ID, not an attachment) or an attachment."""
    item = Attachment(
        leaf.part_id, leaf.filename, leaf.content_type, leaf.content_id, len(data), checksums(data)
    )
    if leaf.content_id and leaf.disposition != "attachment":
        view.inline.append(item)
    else:
        view.attachments.append(item)


def find_part(raw: bytes, part_id: str) -> tuple[str, str, bytes] | None:
    """Content type, file name and decoded content of the leaf ``part_id``, or None.

    Runs in the parser process (a download is rare; parsing is not bounded in time).
    """
    try:
        msg: Message = parse_bytes(raw)
        for leaf in walk(msg, []):
            if leaf.part_id == part_id:
                declared = leaf.content_type
                if declared.startswith("text/") and leaf.charset:
                    declared += f"; {leaf.charset}"  # checked where it is served
                return declared, leaf.filename, bytes(leaf.data())
    except MIME_ERRORS:
        return None
    return None


def link_inline_parts(
    body: str, message_id: str, parts: list[Attachment], base: str = "/dev/inbox"
) -> str:
    """``body`` with each ``cid:`` reference to one of ``parts`` pointed at its part URL."""
    by_cid = {a.content_id: a.part_id for a in parts if a.content_id}

    def cid_url(match: re.Match[str]) -> str:
        part_id = by_cid.get(match.group(1))
        if part_id is None:
            return match.group(0)
        return f"{base}/api/v1/message/{message_id}/part/{part_id}"

    return _CID.sub(cid_url, body)


def iframe_document(
    body: str, message_id: str, inline: list[Attachment], base: str = "/dev/inbox"
) -> str:
    """The mail's HTML prepared for ``<iframe sandbox srcdoc>``.

    ``cid:`` references point at the part URLs under ``base`` (the inbox's
    path), links open in a new tab, and a
    meta CSP forbids scripts even if the sandbox attribute were ever lost.
    """
    head = (
        f'<meta http-equiv="Content-Security-Policy" content="{IFRAME_CSP}"><base target="_blank">'
    )
    return head + link_inline_parts(body, message_id, inline, base)
